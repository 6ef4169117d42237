"""The review queue: customer messages the bot did not handle well, for the trainers.

A Rasa event broker watches the event stream and records every customer message that ended
in a "Meinten Sie …?" clarification, a fallback (offer of the support team), out_of_scope
or an escalation, that was answered with an FAQ at low confidence, or whose answer the
customer rated „nicht hilfreich“ in the widget (``FEEDBACK_EVENT``, published by the socketio
channel; every rating is kept in the store's ``feedback`` table). It also notes how the
conversation went on (button picked, escalated, thanks). Texts are masked
(``faqbot.core.masking``) and senders hashed (keyed) before they are stored.
``faqbot-trainer review`` walks through the queue. Configured in the endpoints:

* ``endpoints.yml`` (one machine): ``event_broker: {type: faqbot.server.review_broker.ReviewQueueBroker,
  db: var/review.db}``, a SQLite file; ``FAQBOT_REVIEW_DB`` overrides the file.
* ``endpoints.production.yml`` (several instances): ``url: ${FAQBOT_REVIEW_DB_URL}``, a
  database all instances share (``faqbot.core.review_store.location``).

The turns of one conversation may be handled by different instances in turn, so no
instance keeps anything about a conversation in memory. Each appends the events it
publishes to the store's inbox; then whichever instance gets the consumer lock
(``ReviewStore.consume``: a row lock on PostgreSQL, the write lock on SQLite) folds the
inbox into entries (``fold``, every ``FOLD_EVERY_S``): one instance at a time, the events in
the order of their timestamps, each conversation's state read from and written back to the
database. In a shared database an event waits ``SETTLE_S`` before it is folded, so that an
instance still writing the turn before (turns of a conversation are serialised by the lock
store) is not overtaken. Entries appear about one to two seconds after their turn.

Rasa calls ``publish`` on its event loop, so the broker only picks what it needs there; the
database work goes to one writer thread, in order. A locked or unreachable database is
waited out there: nothing is lost and no conversation waits for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import math
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rasa.core.brokers.broker import EventBroker

from faqbot.core.intents import NOT_A_QUESTION, OUT_OF_SCOPE, faq_id_for, intent_for
from faqbot.core.masking import mask
from faqbot.core.paths import PROJECT_DIR
from faqbot.core.phrasings import nlu_files, normalise, read_examples
from faqbot.core.review_store import (
    ESCALATED,
    MAX_TEXT,
    Consumption,
    ReviewStore,
    is_shared,
    location,
    sender_hash,
)
from faqbot.core.text import has_letters

logger = logging.getLogger(__name__)

# An FAQ answer below this confidence was probably right (the fallback threshold is 0.6)
# but close enough to a wrong answer that a trainer should confirm it with a phrasing.
LOW_CONFIDENCE = 0.8
# The writer's SQLite busy timeout: short, so that close() can give up in time; a locked
# write is retried, not lost.
BUSY_TIMEOUT_S = 0.5
# Events waiting at most (far more than a trainer's lock of some seconds can pile up); beyond
# that, new ones are dropped rather than filling the server's memory.
MAX_PENDING = 10_000
# How long close() (at shutdown) goes on writing what is still waiting.
CLOSE_TIMEOUT_S = 5.0
# Age of an event in a shared database before it is folded: another instance may still be
# writing the turn before. A SQLite file has one Rasa instance (finding 8's rule), nothing to wait for.
SETTLE_S = 1.0
# How often each instance folds what has settled (also the events of an instance that stopped).
FOLD_EVERY_S = 0.5
# How long the writer gathers events before it writes them, in one transaction.
WRITE_DELAY_S = 0.1
# Events written, or folded, in one transaction at most.
BATCH = 500
JUDGED_ACTIONS = ("action_listen", "action_handle_fallback")
# The costly misses are confident answers: a sample of them goes to the trainers as well
# (share 0 to 1; FAQBOT_REVIEW_SAMPLE), chosen by the text, so that repeats agree.
SAMPLE_VARIABLE, DEFAULT_SAMPLE = "FAQBOT_REVIEW_SAMPLE", 0.02
# Small talk and yes/no outside a question: with this many words that small talk's training
# examples never use, it probably was a question („gibts was günstiger für gründer“).
QUESTION_LIKE_WORDS = 2
SMALL_TALK = frozenset({"greet", "goodbye", "thank", "affirm", "deny", "bot_challenge"})
# The next question shares this much of an answered question's words: asked again, differently.
REPHRASED_OVERLAP = 0.5
# Not a Rasa event: a customer's rating of an FAQ answer, published by the widget's channel
# (faqbot.server.channels.socketio) with ``faq_id``, ``helpful`` and ``answered_at``.
FEEDBACK_EVENT = "faqbot_feedback"
# The FAQ answers of a conversation whose questions are remembered for ratings.
REMEMBERED_ANSWERS = 10
_TIME_TO_FOLD = object()  # the writer's wait ended without an event


def judged_event(event: dict[str, Any]) -> tuple[str, float, dict[str, Any]] | None:
    """(conversation id, timestamp, what the judging needs) of a Rasa event; None if it
    plays no part. Cheap: it runs on Rasa's event loop."""
    kind, sender_id = event.get("event"), event.get("sender_id")
    if not sender_id:
        return None
    if kind == "user":
        text = (event.get("text") or "").strip()
        letters = has_letters(text)
        if len(text) > MAX_TEXT:  # kept in memory until written: only what would be stored
            text = mask(text)[:MAX_TEXT]
        parse = event.get("parse_data") or {}
        intent = parse.get("intent") or {}
        fact = {
            "event": "user",
            "text": text,
            "letters": letters,
            "intent": intent.get("name"),
            "confidence": intent.get("confidence"),
            "ranking": [
                {"name": item.get("name"), "confidence": item.get("confidence")}
                for item in (parse.get("intent_ranking") or [])[:3]
            ],
        }
    elif kind == "bot":
        data = event.get("data") or {}
        custom = data.get("custom") if isinstance(data.get("custom"), dict) else {}
        fact = {
            "event": "bot",
            "clarified": any(
                str(button.get("payload", "")).startswith("/faq_") for button in data.get("buttons") or []
            ),
            "escalated": "escalation" in custom,
            "answered_faq": bool(custom.get("faq_id")),
            "faq_id": custom.get("faq_id"),
        }
        if not (fact["clarified"] or fact["escalated"] or fact["answered_faq"]):
            return None
    elif kind == "action" and event.get("name") in JUDGED_ACTIONS:
        fact = {"event": "action", "name": event["name"]}
    elif kind == "active_loop":
        fact = {"event": "active_loop", "active": bool(event.get("name"))}
    elif kind == FEEDBACK_EVENT:
        fact = {
            "event": "feedback",
            "faq_id": str(event["faq_id"]),
            "helpful": bool(event["helpful"]),
            "answered_at": float(event["answered_at"]),
        }
    else:
        return None
    return sender_id, float(event.get("timestamp") or time.time()), fact


@dataclass
class _Turn:
    """What has been seen of one customer message and the bot's reaction so far."""

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
    answered: str | None = None  # the FAQ id of the answer, if any


@dataclass
class _Conversation:
    last_row: int | None = None  # the recorded message the next reaction belongs to
    last_question: _Turn | None = None  # the latest question, recorded or not
    # The latest question answered with confidence (not recorded): the next turn may show the answer was wrong.
    confident: _Turn | None = None
    bot_asked: bool = False  # the bot's latest turn asked something (buttons, an offer, a form)
    in_form: bool = False
    turn: _Turn | None = None
    # FAQ id -> the question its latest answer replied to (for the customer's rating), oldest first
    answers: dict[str, _Turn] = dataclasses.field(default_factory=dict)

    def state(self) -> dict[str, Any] | None:
        """As stored between folds; None when there is nothing to remember."""
        return None if self == _Conversation() else dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> _Conversation:
        if not state:
            return cls()
        turns = {key: _Turn(**state[key]) if state.get(key) else None for key in ("last_question", "turn", "confident")}
        answers = {faq_id: _Turn(**turn) for faq_id, turn in (state.get("answers") or {}).items()}
        return cls(
            last_row=state.get("last_row"),
            in_form=bool(state.get("in_form")),
            bot_asked=bool(state.get("bot_asked")),
            answers=answers,
            **turns,
        )


def _words(text: str) -> set[str]:
    return {word for word in re.findall(r"\w{3,}", text.lower()) if not word.isdigit()}


def rephrased(earlier: _Turn, later: _Turn) -> bool:
    """Whether ``later`` asks ``earlier`` again: answered with the same FAQ, or most of the
    earlier question's words again."""
    if earlier.answered and later.answered == earlier.answered:
        return True
    words = _words(earlier.text)
    return bool(words) and len(words & _words(later.text)) >= REPHRASED_OVERLAP * len(words)


@functools.cache
def small_talk_words() -> frozenset[str]:
    """The words of the small-talk intents' training examples (data/nlu/general.yml)."""
    examples = read_examples(PROJECT_DIR / "data" / "nlu" / "general.yml")
    return frozenset(word for intent in SMALL_TALK for example in examples.get(intent, ()) for word in _words(example))


_decided: dict[str, Any] = {"files": None, "examples": {}}


def decided_examples() -> dict[str, str]:
    """Normalised training examples -> their intent: what the trainers decided. Read again
    when a file changed (the inbox adds phrasings and retrains without a restart)."""
    files = nlu_files(PROJECT_DIR)
    stamp = [(path.name, path.stat().st_mtime_ns) for path in files]
    if stamp != _decided["files"]:
        _decided["examples"] = {
            normalise(example): intent
            for path in files
            for intent, examples in read_examples(path).items()
            for example in examples
        }
        _decided["files"] = stamp
    return _decided["examples"]


def question_like(turn: _Turn) -> bool:
    """Worded like a question, not like small talk: words small talk does not use."""
    return len(_words(turn.text) - small_talk_words()) >= QUESTION_LIKE_WORDS


def sample_share() -> float:
    try:
        share = float(os.environ.get(SAMPLE_VARIABLE, DEFAULT_SAMPLE))
    except ValueError:
        logger.error("%s ist keine Zahl: Stichprobe von %s", SAMPLE_VARIABLE, DEFAULT_SAMPLE)
        return DEFAULT_SAMPLE
    return min(1.0, max(0.0, share))


def sampled(text: str, share: float) -> bool:
    """The same text always in or always out (a hash, not chance): repeats do not pile up."""
    return int(hashlib.sha256(text.lower().encode("utf-8")).hexdigest()[:8], 16) < share * 0x100000000


class ReviewQueue:
    """Turns the events of one fold into review entries, with the conversations' states.

    Rasa publishes each turn's events together: the user event, the actions and bot
    messages, and ``action_listen`` at the end, where the turn is judged.
    """

    def __init__(self, batch: Consumption) -> None:
        self.batch = batch
        self._conversations: dict[str, _Conversation] = {}
        self.sample = sample_share()
        small_talk_words(), decided_examples()  # read now: a missing general.yml shows at the start

    def _conversation(self, sender: str) -> _Conversation:
        if sender not in self._conversations:
            self._conversations[sender] = _Conversation.from_state(self.batch.states.get(sender))
        return self._conversations[sender]

    def save(self) -> None:
        for sender, conversation in self._conversations.items():
            self.batch.states[sender] = conversation.state()

    def handle(self, sender: str, fact: dict[str, Any]) -> None:
        conversation, kind = self._conversation(sender), fact["event"]
        if kind == "user":
            if conversation.turn:  # the previous turn ended without action_listen
                self._judge(sender, conversation)
            conversation.turn = self._turn(fact, conversation.in_form)
        elif kind == "active_loop":
            conversation.in_form = fact["active"]
        elif kind == "feedback":
            self._rated(sender, conversation, fact)
        elif conversation.turn is None:
            return
        elif kind == "bot":
            turn = conversation.turn
            turn.clarified |= fact["clarified"]
            turn.escalated |= fact["escalated"]
            turn.answered_faq |= fact["answered_faq"]
            turn.answered = fact.get("faq_id") or turn.answered
        elif fact["name"] == "action_handle_fallback":
            conversation.turn.fallback = True
        elif fact["name"] == "action_listen":
            self._judge(sender, conversation)

    @staticmethod
    def _turn(fact: dict[str, Any], in_form: bool) -> _Turn:
        text, intent = fact["text"], fact["intent"]
        payload = text if text.startswith("/") else None
        return _Turn(
            text=text,
            intent=intent,
            confidence=fact["confidence"],
            ranking=fact["ranking"],
            payload=payload,
            in_form=in_form,
            is_question=not payload and fact["letters"] and not in_form and intent not in NOT_A_QUESTION,
        )

    def _judge(self, sender: str, conversation: _Conversation) -> None:
        turn, conversation.turn = conversation.turn, None
        if turn.answered:  # a question, a clarification button, or one asked within a form
            question = conversation.last_question if turn.payload and conversation.last_question else turn
            conversation.answers.pop(turn.answered, None)
            conversation.answers[turn.answered] = question
            while len(conversation.answers) > REMEMBERED_ANSWERS:
                conversation.answers.pop(next(iter(conversation.answers)))
        if turn.is_question:
            self._judge_question(sender, conversation, turn)
        else:
            self._judge_reaction(sender, conversation, turn)
        conversation.bot_asked = turn.clarified or (turn.fallback and not turn.answered_faq) or conversation.in_form

    def _judge_question(self, sender: str, conversation: _Conversation, turn: _Turn) -> None:
        kind = None
        if turn.clarified:
            kind = "clarification"
        elif turn.fallback and turn.intent == OUT_OF_SCOPE:
            # Refused as the trainers decided (their example): nothing to review again.
            kind = None if decided_examples().get(normalise(turn.text)) == OUT_OF_SCOPE else "out_of_scope"
        elif turn.fallback and not turn.answered_faq:  # the fallback answers a FAQ newer than the dialogue
            kind = "fallback"
        elif turn.escalated:
            kind = "escalation"
        elif turn.answered_faq and (turn.confidence or 0) < LOW_CONFIDENCE:
            kind = "low_confidence"
        elif turn.answered_faq and sampled(turn.text, self.sample):
            kind = "sample"
        if kind in ("low_confidence", "sample") and turn.answered:
            # A repeat the bot answered as the trainers decided (their example): nothing new.
            kind = None if decided_examples().get(normalise(turn.text)) == intent_for(turn.answered) else kind
        earlier = conversation.confident
        if earlier is not None and rephrased(earlier, turn):  # the confident answer did not help
            self._record(sender, earlier, "contradicted", "rephrased")
        conversation.confident = turn if turn.answered_faq and kind in (None, "sample") else None
        conversation.last_question = turn
        # A new question: later reactions belong to it, even if it was answered well.
        conversation.last_row = self._record(sender, turn, kind) if kind else None

    def _judge_reaction(self, sender: str, conversation: _Conversation, turn: _Turn) -> None:
        confident, conversation.confident = conversation.confident, None
        typed = not turn.payload and not turn.in_form
        after_answer = confident is not None and typed and not conversation.bot_asked
        if after_answer and turn.intent == "deny":  # „nein“ to a confident answer
            conversation.last_row = self._record(sender, confident, "contradicted", "said_no")
        # Small talk or yes/no (not as an answer to the bot) worded like a question.
        answering = turn.intent in ("affirm", "deny") and conversation.bot_asked
        if typed and turn.intent in SMALL_TALK and not answering and question_like(turn):
            self._record(sender, turn, "small_talk")
        if after_answer and turn.intent in ("deny", *SMALL_TALK):
            return
        if after_answer and turn.intent == "human_handoff" and not turn.escalated:  # a form asks for details first
            conversation.last_question = confident
            conversation.last_row = self._record(sender, confident, "escalation", "asked_for_person")
            return
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
                self.batch.set_outcome(conversation.last_row, ESCALATED)
            elif conversation.last_question:  # e.g. the customer gave up on an answered question
                conversation.last_row = self._record(sender, conversation.last_question, "escalation", ESCALATED)
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
            self.batch.set_outcome(conversation.last_row, outcome)

    def _rated(self, sender: str, conversation: _Conversation, fact: dict[str, Any]) -> None:
        """Keep the rating (once per answer); a „nicht hilfreich“ puts the question that got the
        answer in front of the trainers, with the answered FAQ as its outcome."""
        faq_id, helpful = fact["faq_id"], fact["helpful"]
        if not self.batch.new_feedback(sender, faq_id, fact["answered_at"]):
            return
        question = conversation.answers.get(faq_id)
        entry = None
        if not helpful and question is not None:
            entry = self._record(sender, question, "unhelpful", f"unhelpful:{faq_id}")
        self.batch.add_feedback(sender, faq_id, helpful, fact["answered_at"], entry)

    def _record(self, sender: str, turn: _Turn, kind: str, outcome: str | None = None) -> int:
        return self.batch.record(turn.text, sender, kind, turn.intent, turn.confidence, turn.ranking, outcome)


def fold(store: ReviewStore, settle_s: float = SETTLE_S, limit: int = BATCH) -> int | None:
    """Fold the inbox's settled events into entries, if no other process is folding right
    now: how many events were folded, None if another process was."""
    with store.consume(settle_s, limit) as batch:
        if batch is None:
            return None
        queue = ReviewQueue(batch)
        for event in batch.events:
            if event.fact is None:  # unreadable: dropped (logged by the store)
                continue
            try:
                queue.handle(event.sender, event.fact)
            except Exception:  # a broken event must not hold up the ones behind it
                logger.exception("Review-Warteschlange: Ereignis nicht verarbeitet")
        queue.save()
        return len(batch.events)


def _retryable(error: Exception) -> bool:
    """A locked, unreachable or full database: worth waiting for."""
    return isinstance(error, sa.exc.OperationalError) or (
        isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated
    )


class ReviewWriter:
    """Appends events to a ReviewStore's inbox and folds it, from a thread of its own, in
    order; the caller never waits for the database."""

    def __init__(
        self,
        where: str | Path,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        max_pending: int = MAX_PENDING,
        settle_s: float | None = None,
        fold_every_s: float = FOLD_EVERY_S,
    ) -> None:
        self.location, self.busy_timeout_s = where, busy_timeout_s
        self.settle_s = (SETTLE_S if is_shared(where) else 0.0) if settle_s is None else settle_s
        self.fold_every_s = fold_every_s
        self._pending: queue.Queue = queue.Queue(max_pending)  # (sender_id, timestamp, fact); None: stop
        self._dropped = 0  # counted by the callers' thread (the event loop) only
        self.written = 0  # events in the inbox, counted by the writer thread
        self._give_up_at = math.inf  # set by close()
        self._fold_failed = False  # logged once until a fold works again
        self._store: ReviewStore | None = None  # opened by the writer thread: opening may wait for a lock too
        self._thread = threading.Thread(target=self._run, name="faqbot-review-writer", daemon=True)
        self._thread.start()

    def append(self, sender_id: str, timestamp: float, fact: dict[str, Any]) -> bool:
        """Queue the event for writing; False if the queue is full and it was dropped."""
        try:
            self._pending.put_nowait((sender_id, timestamp, fact))
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1:
                logger.error(
                    "Review-Warteschlange voll (%d Schreibvorgänge): neue werden verworfen", self._pending.maxsize
                )
            return False
        if self._pending.qsize() <= self._pending.maxsize // 2:  # not at every free slot while it drains
            self._report_dropped()
        return True

    def _report_dropped(self) -> None:
        if self._dropped:
            logger.error("Review-Warteschlange: %d Schreibvorgänge verworfen (Warteschlange voll)", self._dropped)
            self._dropped = 0

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Write what is waiting and fold it, for at most about timeout_s; the rest is counted in the log."""
        self._give_up_at = time.monotonic() + timeout_s
        margin = 2 * self.busy_timeout_s + 1  # one more attempt and the writer's pause
        try:
            self._pending.put(None, timeout=timeout_s + margin)  # room is made by writing or giving up
        except queue.Full:
            pass
        self._thread.join(max(0.0, self._give_up_at - time.monotonic()) + margin)
        self._report_dropped()

    def _run(self) -> None:
        # Writes and folds are gathered (every WRITE_DELAY_S, every fold_every_s): few
        # transactions, so the thread takes little of the CPU the event loop needs.
        next_fold, stopping = time.monotonic() + self.fold_every_s, False
        while not stopping:
            try:
                first = self._pending.get(timeout=max(0.0, next_fold - time.monotonic()))
            except queue.Empty:
                first = _TIME_TO_FOLD
            if first is not _TIME_TO_FOLD:
                batch, stopping = self._take(first)
                if batch and not self._write(batch):  # close() gave up on a locked database
                    lost = len(batch) + (0 if stopping else self._drain())
                    logger.error("Review-Warteschlange: Datenbank gesperrt, %d Schreibvorgänge nicht gespeichert", lost)
                    break
            if stopping:  # everything is folded: else the next start, or another instance, would do it
                self._fold(settle_s=0.0)
            elif time.monotonic() >= next_fold:
                self._fold()
                next_fold = time.monotonic() + self.fold_every_s
        if self._store is not None:
            self._store.close()

    def _take(self, first: tuple | None) -> tuple[list[tuple], bool]:
        """What arrives within WRITE_DELAY_S, up to BATCH events, and whether close() asked to stop."""
        batch, item, until = [], first, time.monotonic() + WRITE_DELAY_S
        while item is not None:
            batch.append(item)
            if len(batch) == BATCH:
                return batch, False
            try:
                item = self._pending.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                return batch, False
        return batch, True

    def _drain(self) -> int:
        """Discard what waits until close()'s stop; how many."""
        count = 0
        while self._pending.get() is not None:  # close() puts its None once there is room
            count += 1
        return count

    def _open(self) -> ReviewStore:
        if self._store is None:
            self._store = ReviewStore(self.location, timeout=self.busy_timeout_s)
        return self._store

    def _write(self, batch: list[tuple]) -> bool:
        """Append the batch to the inbox, waiting out a locked database; False if close() gave up meanwhile."""
        pause, locked_since = 0.05, None
        try:
            rows = [(sender_hash(sender_id), timestamp, fact) for sender_id, timestamp, fact in batch]
        except Exception:
            logger.exception("Review-Warteschlange: %d Schreibvorgänge verworfen", len(batch))
            return True
        while True:
            try:
                self._open().append(rows)
            except Exception as error:
                if not _retryable(error):  # a broken batch must not hold up the ones behind it
                    logger.exception("Review-Warteschlange: %d Schreibvorgänge verworfen", len(batch))
                    return True
                if locked_since is None:  # once per outage; the message names no text
                    locked_since = time.monotonic()
                    logger.warning(
                        "Review-Warteschlange: Datenbank nicht beschreibbar (%s), %d Schreibvorgänge warten",
                        getattr(error, "orig", error),
                        self._pending.qsize() + len(batch),
                    )
                if time.monotonic() >= self._give_up_at:
                    return False
                time.sleep(pause)
                pause = min(2 * pause, 1.0)
                continue
            self.written += len(rows)
            if locked_since is not None:
                logger.info(
                    "Review-Warteschlange: Datenbank nach %.1f s wieder beschreibbar, %d Schreibvorgänge warten",
                    time.monotonic() - locked_since,
                    self._pending.qsize(),
                )
            return True

    def _fold(self, settle_s: float | None = None) -> None:
        """Fold what has settled (all of it with settle_s=0), unless another process is at it."""
        settle_s = self.settle_s if settle_s is None else settle_s
        try:
            store = self._open()
            if not store.has_inbox():
                return
            while fold(store, settle_s) == BATCH and time.monotonic() < self._give_up_at:
                pass  # more waiting
            self._fold_failed = False
        except Exception as error:
            if _retryable(error):  # locked or away: the next round tries again
                logger.debug("Review-Warteschlange: Zusammenführen verschoben (%s)", getattr(error, "orig", error))
            elif not self._fold_failed:
                self._fold_failed = True
                logger.exception("Review-Warteschlange: Zusammenführen fehlgeschlagen")


def describe(where: str | Path) -> str:
    """The queue's place for the log, without a password."""
    return sa.engine.make_url(where).render_as_string(hide_password=True) if is_shared(where) else str(where)


class ReviewQueueBroker(EventBroker):
    """Rasa event broker that fills the review queue; never disturbs the conversation."""

    def __init__(self, where: str | Path) -> None:
        self.writer = ReviewWriter(where)

    @classmethod
    async def from_endpoint_config(cls, broker_config, event_loop=None) -> ReviewQueueBroker:
        settings = (broker_config.kwargs or {}) if broker_config else {}
        broker = cls(location(url=broker_config.url if broker_config else None, db=settings.get("db")))
        logger.info("Review-Warteschlange: %s", describe(broker.writer.location))
        return broker

    def publish(self, event: dict[str, Any]) -> None:
        # Runs on Rasa's event loop for every event: picking only (the writer thread does the
        # database work), and an error must never reach the customer.
        try:
            judged = judged_event(event)
            if judged:
                self.writer.append(*judged)
        except Exception:
            logger.exception("Review-Warteschlange: Ereignis nicht verarbeitet")

    def rate(self, sender_id: str, faq_id: str, helpful: bool, answered_at: float) -> bool:
        """Queue a customer's rating of an FAQ answer; False if it could not be queued."""
        event = {
            "event": FEEDBACK_EVENT,
            "sender_id": sender_id,
            "timestamp": time.time(),
            "faq_id": faq_id,
            "helpful": helpful,
            "answered_at": answered_at,
        }
        return self.writer.append(*judged_event(event))

    async def close(self) -> None:
        # In a thread: waiting out a locked database must not stall the rest of the shutdown.
        await asyncio.to_thread(self.writer.close)
