"""The review queue: customer messages the bot did not handle well, for the trainers.

A Rasa event broker (``endpoints.yml``: ``event_broker: {type:
faqbot.server.review_broker.ReviewQueueBroker, db: var/review.db}``; ``FAQBOT_REVIEW_DB``
overrides the file) watches the event stream and records every customer message that
ended in a "Meinten Sie …?" clarification, a fallback (offer of the support team),
out_of_scope or an escalation, or that was answered with an FAQ at low confidence.
It also notes how the conversation went on (button picked, escalated, thanks).
Texts are masked (``faqbot.core.masking``) and senders hashed (keyed) before they are stored.
``faqbot-trainer review`` walks through the queue.

Rasa calls ``publish`` on its event loop, so the broker only judges in memory there; the
database writes go to one writer thread, in order. A locked database (e.g. a trainer's
write) is waited out there: nothing is lost and no conversation waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rasa.core.brokers.broker import EventBroker

from faqbot.core.intents import NOT_A_QUESTION, faq_id_for
from faqbot.core.masking import mask
from faqbot.core.review_store import ESCALATED, MAX_TEXT, ReviewStore, db_path, sender_hash
from faqbot.core.text import has_letters

logger = logging.getLogger(__name__)

# An FAQ answer below this confidence was probably right (the fallback threshold is 0.6)
# but close enough to a wrong answer that a trainer should confirm it with a phrasing.
LOW_CONFIDENCE = 0.8
# Conversations remembered at once; older ones are forgotten (only their follow-up is lost).
MAX_SENDERS = 10_000
# The writer's SQLite busy timeout: short, so that close() can give up in time; a locked
# write is retried, not lost.
BUSY_TIMEOUT_S = 0.5
# Writes waiting at most (far more than a trainer's lock of some seconds can pile up); beyond
# that, new ones are dropped rather than filling the server's memory.
MAX_PENDING = 10_000
# How long close() (at shutdown) goes on writing what is still waiting.
CLOSE_TIMEOUT_S = 5.0


@dataclass
class _Turn:
    """What the broker has seen of one customer message and the bot's reaction so far."""

    text: str
    intent: str | None
    confidence: float | None
    ranking: list[dict[str, Any]]
    payload: str | None  # "/faq_x" when a button was pressed
    in_form: bool  # an answer to a form's question (escalation details)
    is_question: bool
    clarified: bool = False
    fallback: bool = False
    escalated: bool = False
    answered_faq: bool = False


@dataclass
class _Conversation:
    last_row: object | None = None  # the recorded message the next reaction belongs to (id or writer handle)
    last_question: _Turn | None = None  # the latest question, recorded or not
    in_form: bool = False
    turn: _Turn | None = None


class ReviewQueue:
    """Turns the event stream of all conversations into review entries.

    Rasa publishes each turn's events together: the user event, the actions and bot
    messages, and ``action_listen`` at the end, where the turn is judged.
    """

    def __init__(self, store: ReviewStore | ReviewWriter) -> None:
        self.store = store
        self._conversations: OrderedDict[str, _Conversation] = OrderedDict()

    def _conversation(self, sender_id: str) -> _Conversation:
        conversation = self._conversations.pop(sender_id, None) or _Conversation()
        self._conversations[sender_id] = conversation  # most recent last
        if len(self._conversations) > MAX_SENDERS:
            self._conversations.popitem(last=False)
        return conversation

    def handle(self, event: dict[str, Any]) -> None:
        kind, sender_id = event.get("event"), event.get("sender_id")
        if not sender_id or kind not in ("user", "bot", "action", "active_loop"):
            return
        conversation = self._conversation(sender_id)
        if kind == "user":
            if conversation.turn:  # the previous turn ended without action_listen
                self._judge(sender_id, conversation)
            conversation.turn = self._turn(event, conversation.in_form)
        elif kind == "active_loop":
            conversation.in_form = bool(event.get("name"))
        elif conversation.turn is None:
            return
        elif kind == "bot":
            data = event.get("data") or {}
            custom = data.get("custom") or {}
            if any(str(button.get("payload", "")).startswith("/faq_") for button in data.get("buttons") or []):
                conversation.turn.clarified = True
            if isinstance(custom, dict) and "escalation" in custom:
                conversation.turn.escalated = True
            if isinstance(custom, dict) and custom.get("faq_id"):
                conversation.turn.answered_faq = True
        elif event.get("name") == "action_handle_fallback":
            conversation.turn.fallback = True
        elif event.get("name") == "action_listen":
            self._judge(sender_id, conversation)

    @staticmethod
    def _turn(event: dict[str, Any], in_form: bool) -> _Turn:
        text = (event.get("text") or "").strip()
        if len(text) > MAX_TEXT:  # kept in memory until judged: only what would be stored
            text = mask(text)[:MAX_TEXT]
        parse = event.get("parse_data") or {}
        intent = parse.get("intent") or {}
        payload = text if text.startswith("/") else None
        return _Turn(
            text=text,
            intent=intent.get("name"),
            confidence=intent.get("confidence"),
            ranking=(parse.get("intent_ranking") or [])[:3],
            payload=payload,
            in_form=in_form,
            is_question=(
                not payload and has_letters(text) and not in_form and intent.get("name") not in NOT_A_QUESTION
            ),
        )

    def _judge(self, sender_id: str, conversation: _Conversation) -> None:
        turn, conversation.turn = conversation.turn, None
        if turn.is_question:
            self._judge_question(sender_id, conversation, turn)
        else:
            self._judge_reaction(sender_id, conversation, turn)

    def _judge_question(self, sender_id: str, conversation: _Conversation, turn: _Turn) -> None:
        kind = None
        if turn.clarified:
            kind = "clarification"
        elif turn.fallback:
            kind = "out_of_scope" if turn.intent == "out_of_scope" else "fallback"
        elif turn.escalated:
            kind = "escalation"
        elif turn.answered_faq and (turn.confidence or 0) < LOW_CONFIDENCE:
            kind = "low_confidence"
        conversation.last_question = turn
        # A new question: later reactions belong to it, even if it was answered well.
        conversation.last_row = self._record(sender_id, turn, kind) if kind else None

    def _judge_reaction(self, sender_id: str, conversation: _Conversation, turn: _Turn) -> None:
        if (
            turn.intent == "human_handoff"
            and not turn.payload
            and not turn.in_form
            and conversation.last_question is None
        ):
            # Asking for a person before any question: the request itself is worth a look
            # once it ends in an escalation (now, or after a form asked for details).
            conversation.last_question = turn
        if turn.escalated:
            if conversation.last_row:
                self.store.set_outcome(conversation.last_row, ESCALATED)
            elif conversation.last_question:  # e.g. the customer gave up on an answered question
                conversation.last_row = self._record(sender_id, conversation.last_question, "escalation", ESCALATED)
            return
        if conversation.last_row is None:
            return
        outcome = None
        if turn.payload and faq_id_for(turn.intent):
            outcome = f"faq:{faq_id_for(turn.intent)}"
        elif turn.payload == "/out_of_scope":
            outcome = "none_of_these"
        elif turn.intent == "deny":
            outcome = "declined"
        elif turn.intent == "thank":
            outcome = "thanks"
        if outcome:
            self.store.set_outcome(conversation.last_row, outcome)

    def _record(self, sender_id: str, turn: _Turn, kind: str, outcome: str | None = None) -> object:
        return self.store.record(
            turn.text, sender_hash(sender_id), kind, turn.intent, turn.confidence, turn.ranking, outcome
        )


class _Row:
    """A review entry handed to the writer; its row id once written (used by the writer thread only)."""

    __slots__ = ("id",)

    def __init__(self) -> None:
        self.id: int | None = None


class ReviewWriter:
    """Writes to a ReviewStore from a thread of its own, in order; the caller never waits for SQLite.

    Offers ReviewStore's ``record`` and ``set_outcome``, but ``record`` returns a handle
    instead of the row id: the writer fills in the id when it has written the row.
    """

    def __init__(self, path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S, max_pending: int = MAX_PENDING) -> None:
        self.path, self.busy_timeout_s = path, busy_timeout_s
        self._pending: queue.Queue = queue.Queue(max_pending)  # ("record"|"outcome", row, value); None: stop
        self._dropped = 0  # counted by the callers' thread (the event loop) only
        self._give_up_at = math.inf  # set by close()
        self._store: ReviewStore | None = None  # opened by the writer thread: opening may wait for a lock too
        self._thread = threading.Thread(target=self._run, name="faqbot-review-writer", daemon=True)
        self._thread.start()

    def record(
        self,
        text: str,
        sender: str,
        kind: str,
        intent: str | None = None,
        confidence: float | None = None,
        ranking: list[dict[str, Any]] | None = None,
        outcome: str | None = None,
    ) -> _Row:
        row = _Row()
        self._put(("record", row, (text, sender, kind, intent, confidence, ranking, outcome)))
        return row

    def set_outcome(self, row: _Row, outcome: str) -> None:
        self._put(("outcome", row, outcome))

    def _put(self, operation: tuple) -> None:
        try:
            self._pending.put_nowait(operation)
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1:
                logger.error(
                    "Review-Warteschlange voll (%d Schreibvorgänge): neue werden verworfen", self._pending.maxsize
                )
            return
        if self._pending.qsize() <= self._pending.maxsize // 2:  # not at every free slot while it drains
            self._report_dropped()

    def _report_dropped(self) -> None:
        if self._dropped:
            logger.error("Review-Warteschlange: %d Schreibvorgänge verworfen (Warteschlange voll)", self._dropped)
            self._dropped = 0

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Write what is waiting, for at most about timeout_s; the rest is counted in the log."""
        self._give_up_at = time.monotonic() + timeout_s
        margin = 2 * self.busy_timeout_s + 1  # one more attempt and the writer's pause
        try:
            self._pending.put(None, timeout=timeout_s + margin)  # room is made by writing or giving up
        except queue.Full:
            pass
        self._thread.join(max(0.0, self._give_up_at - time.monotonic()) + margin)
        self._report_dropped()

    def _run(self) -> None:
        while (operation := self._pending.get()) is not None:
            if not self._write(operation):  # close() gave up on a locked database
                lost = 1
                while self._pending.get() is not None:  # close() puts its None once there is room
                    lost += 1
                logger.error("Review-Warteschlange: Datenbank gesperrt, %d Schreibvorgänge nicht gespeichert", lost)
                break
        if self._store is not None:
            self._store.close()

    def _write(self, operation: tuple) -> bool:
        """Write one operation, waiting out a locked database; False if close() gave up meanwhile."""
        pause, locked_since = 0.05, None
        while True:
            try:
                self._apply(operation)
            except sqlite3.OperationalError as error:  # locked, or e.g. disk full: keep it, and the order
                if locked_since is None:  # once per outage; the message names no text
                    locked_since = time.monotonic()
                    logger.warning(
                        "Review-Warteschlange: Datenbank nicht beschreibbar (%s), %d Schreibvorgänge warten",
                        error,
                        self._pending.qsize() + 1,
                    )
                if time.monotonic() >= self._give_up_at:
                    return False
                time.sleep(pause)
                pause = min(2 * pause, 1.0)
                continue
            except Exception:  # a broken operation must not hold up the ones behind it
                logger.exception("Review-Warteschlange: Schreibvorgang verworfen")
            if locked_since is not None:
                logger.info(
                    "Review-Warteschlange: Datenbank nach %.1f s wieder beschreibbar, %d Schreibvorgänge warten",
                    time.monotonic() - locked_since,
                    self._pending.qsize(),
                )
            return True

    def _apply(self, operation: tuple) -> None:
        if self._store is None:
            self._store = ReviewStore(self.path, timeout=self.busy_timeout_s)
        kind, row, value = operation
        if kind == "record":
            row.id = self._store.record(*value)
        elif row.id is not None:  # None: the entry was dropped or could not be stored
            self._store.set_outcome(row.id, value)


class ReviewQueueBroker(EventBroker):
    """Rasa event broker that fills the review queue; never disturbs the conversation."""

    def __init__(self, path: Path) -> None:
        self.writer = ReviewWriter(path)
        self.queue = ReviewQueue(self.writer)

    @classmethod
    async def from_endpoint_config(cls, broker_config, event_loop=None) -> ReviewQueueBroker:
        configured = (broker_config.kwargs or {}).get("db") if broker_config else None
        broker = cls(db_path(configured))
        logger.info("Review-Warteschlange: %s", broker.writer.path)
        return broker

    def publish(self, event: dict[str, Any]) -> None:
        # Runs on Rasa's event loop for every event: in-memory work only (the writer thread
        # does the writes), and an error must never reach the customer.
        try:
            self.queue.handle(event)
        except Exception:
            logger.exception("Review-Warteschlange: Ereignis nicht verarbeitet")

    async def close(self) -> None:
        # In a thread: waiting out a locked database must not stall the rest of the shutdown.
        await asyncio.to_thread(self.writer.close)
