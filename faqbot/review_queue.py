"""The review queue: customer messages the bot did not handle well, for the trainers.

A Rasa event broker (``endpoints.yml``: ``event_broker: {type:
faqbot.review_queue.ReviewQueueBroker, db: var/review.db}``; ``FAQBOT_REVIEW_DB``
overrides the file) watches the event stream and records every customer message that
ended in a "Meinten Sie …?" clarification, a fallback (offer of the support team),
out_of_scope or an escalation, or that was answered with an FAQ at low confidence.
It also notes how the conversation went on (button picked, escalated, thanks).
Texts are masked (e-mail, phone, IBAN) and senders hashed before they are stored.
``python -m faqbot.trainer review`` walks through the queue.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

from rasa.core.brokers.broker import EventBroker

from actions.knowledge import NOT_A_QUESTION, PROJECT_DIR, faq_id_for
from faqbot.masking import mask

logger = logging.getLogger(__name__)

DEFAULT_DB = PROJECT_DIR / "var" / "review.db"
# An FAQ answer below this confidence was probably right (the fallback threshold is 0.6)
# but close enough to a wrong answer that a trainer should confirm it with a phrasing.
LOW_CONFIDENCE = 0.8
KINDS = ("clarification", "fallback", "out_of_scope", "escalation", "low_confidence")
STATUSES = ("open", "assigned", "skipped", "new_question", "out_of_scope")
# Outcomes: "faq:<id>" (clarification button picked), "none_of_these", "declined",
# "escalated", "thanks"; NULL = the customer left or did nothing of these.
ESCALATED = "escalated"
# Conversations remembered at once; older ones are forgotten (only their follow-up is lost).
MAX_SENDERS = 10_000
# Longer messages are cut when stored: a trainer reads them, a phrasing may have 500 characters.
MAX_TEXT = 2000

SCHEMA = """
CREATE TABLE IF NOT EXISTS review (
    id INTEGER PRIMARY KEY,
    created TEXT NOT NULL,
    sender TEXT NOT NULL,
    text TEXT NOT NULL,
    intent TEXT,
    confidence REAL,
    ranking TEXT NOT NULL DEFAULT '[]',
    kind TEXT NOT NULL,
    outcome TEXT,
    status TEXT NOT NULL DEFAULT 'open',
    assigned_to TEXT
);
CREATE INDEX IF NOT EXISTS review_status ON review (status);
"""


def db_path(configured: Optional[str] = None) -> Path:
    """FAQBOT_REVIEW_DB, else the configured file (relative to the project), else var/review.db."""
    path = Path(os.environ.get("FAQBOT_REVIEW_DB") or configured or DEFAULT_DB)
    return path if path.is_absolute() else PROJECT_DIR / path


def sender_hash(sender_id: str) -> str:
    # Only needed to group the messages of one conversation, not to find the customer.
    return hashlib.sha256(sender_id.encode("utf-8")).hexdigest()[:16]


@dataclass
class Entry:
    id: int
    created: str
    sender: str
    text: str
    intent: Optional[str]
    confidence: Optional[float]
    ranking: List[Dict[str, Any]]
    kind: str
    outcome: Optional[str]
    status: str
    assigned_to: Optional[str]

    def _best_intent(self) -> Dict[str, Any]:
        # nlu_fallback only says "unsure"; the classifier's own guess comes after it.
        return next((item for item in self.ranking if item["name"] != "nlu_fallback"), {})

    @property
    def guess(self) -> Optional[str]:
        """The FAQ id the bot thought most likely (also when it was unsure), if an FAQ."""
        return faq_id_for(self._best_intent().get("name"))

    @property
    def guess_confidence(self) -> Optional[float]:
        return self._best_intent().get("confidence")

    @property
    def picked_faq(self) -> Optional[str]:
        """The FAQ id of the clarification button the customer picked, if any."""
        return self.outcome[4:] if self.outcome and self.outcome.startswith("faq:") else None


class ReviewStore:
    """The queue in SQLite (WAL: the bot writes while a trainer reads)."""

    def __init__(self, path: Optional[Path] = None) -> None:
        self.path = Path(path or db_path())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._connection.row_factory = sqlite3.Row
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")  # WAL: safe, and no fsync per row
        self._connection.executescript(SCHEMA)

    def close(self) -> None:
        self._connection.close()

    def record(self, text: str, sender: str, kind: str, intent: Optional[str] = None,
               confidence: Optional[float] = None, ranking: Optional[List[Dict[str, Any]]] = None,
               outcome: Optional[str] = None, created: Optional[str] = None) -> int:
        """Store one message (masked here, so no caller can forget it); returns its id."""
        # Mask before cutting, so that no half e-mail address escapes the mask; control
        # characters would garble the trainer's terminal.
        text = re.sub(r"[\x00-\x1f\x7f]+", " ", mask(text))[:MAX_TEXT]
        if kind not in KINDS:
            raise ValueError(f"Unbekannte Art: {kind}")
        top3 = [{"name": item["name"], "confidence": round(float(item.get("confidence") or 0), 4)}
                for item in (ranking or [])[:3]]
        cursor = self._connection.execute(
            "INSERT INTO review (created, sender, text, intent, confidence, ranking, kind, outcome)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (created or datetime.now(timezone.utc).isoformat(timespec="seconds"), sender, text,
             intent, None if confidence is None else round(float(confidence), 4),
             json.dumps(top3), kind, outcome))
        return cursor.lastrowid

    def set_outcome(self, entry_id: int, outcome: str) -> None:
        """The first reaction counts; an escalation later in the conversation overrides it."""
        self._connection.execute(
            "UPDATE review SET outcome = ? WHERE id = ? AND (outcome IS NULL OR ? = ?)",
            (outcome, entry_id, outcome, ESCALATED))

    def set_status(self, entry_id: int, status: str, assigned_to: Optional[str] = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"Unbekannter Status: {status}")
        self._connection.execute("UPDATE review SET status = ?, assigned_to = ? WHERE id = ?",
                                 (status, assigned_to, entry_id))

    def entries(self, status: Optional[str] = "open", kind: Optional[str] = None,
                limit: Optional[int] = None, since: Optional[datetime] = None) -> List[Entry]:
        query, params = "SELECT * FROM review WHERE 1 = 1", []
        if status:
            query, params = query + " AND status = ?", params + [status]
        if kind:
            query, params = query + " AND kind = ?", params + [kind]
        if since:  # ISO timestamps in UTC compare correctly as text
            query, params = query + " AND created >= ?", params + [since.astimezone(timezone.utc).isoformat(timespec="seconds")]
        query += " ORDER BY id"
        if limit:
            query, params = query + " LIMIT ?", params + [limit]
        return [Entry(**{**dict(row), "ranking": json.loads(row["ranking"])})
                for row in self._connection.execute(query, params)]


@dataclass
class _Turn:
    """What the broker has seen of one customer message and the bot's reaction so far."""
    text: str
    intent: Optional[str]
    confidence: Optional[float]
    ranking: List[Dict[str, Any]]
    payload: Optional[str]           # "/faq_x" when a button was pressed
    in_form: bool                    # an answer to a form's question (escalation details)
    is_question: bool
    clarified: bool = False
    fallback: bool = False
    escalated: bool = False
    answered_faq: bool = False


@dataclass
class _Conversation:
    last_row: Optional[int] = None        # the recorded message the next reaction belongs to
    last_question: Optional[_Turn] = None  # the latest question, recorded or not
    in_form: bool = False
    turn: Optional[_Turn] = None


class ReviewQueue:
    """Turns the event stream of all conversations into review entries.

    Rasa publishes each turn's events together: the user event, the actions and bot
    messages, and ``action_listen`` at the end, where the turn is judged.
    """

    def __init__(self, store: ReviewStore) -> None:
        self.store = store
        self._conversations: "OrderedDict[str, _Conversation]" = OrderedDict()

    def _conversation(self, sender_id: str) -> _Conversation:
        conversation = self._conversations.pop(sender_id, None) or _Conversation()
        self._conversations[sender_id] = conversation  # most recent last
        if len(self._conversations) > MAX_SENDERS:
            self._conversations.popitem(last=False)
        return conversation

    def handle(self, event: Dict[str, Any]) -> None:
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
    def _turn(event: Dict[str, Any], in_form: bool) -> _Turn:
        text = (event.get("text") or "").strip()
        if len(text) > MAX_TEXT:  # kept in memory until judged: only what would be stored
            text = mask(text)[:MAX_TEXT]
        parse = event.get("parse_data") or {}
        intent = parse.get("intent") or {}
        payload = text if text.startswith("/") else None
        has_letters = bool(re.search(r"[^\W\d_]", text))
        return _Turn(text=text, intent=intent.get("name"), confidence=intent.get("confidence"),
                     ranking=(parse.get("intent_ranking") or [])[:3], payload=payload, in_form=in_form,
                     is_question=(not payload and has_letters and not in_form
                                  and intent.get("name") not in NOT_A_QUESTION))

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
        if (turn.intent == "human_handoff" and not turn.payload and not turn.in_form
                and conversation.last_question is None):
            # Asking for a person before any question: the request itself is worth a look
            # once it ends in an escalation (now, or after a form asked for details).
            conversation.last_question = turn
        if turn.escalated:
            if conversation.last_row:
                self.store.set_outcome(conversation.last_row, ESCALATED)
            elif conversation.last_question:  # e.g. the customer gave up on an answered question
                conversation.last_row = self._record(sender_id, conversation.last_question,
                                                     "escalation", ESCALATED)
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

    def _record(self, sender_id: str, turn: _Turn, kind: str, outcome: Optional[str] = None) -> int:
        return self.store.record(turn.text, sender_hash(sender_id), kind, turn.intent,
                                 turn.confidence, turn.ranking, outcome)


class ReviewQueueBroker(EventBroker):
    """Rasa event broker that fills the review queue; never disturbs the conversation."""

    def __init__(self, path: Path) -> None:
        self.queue = ReviewQueue(ReviewStore(path))

    @classmethod
    async def from_endpoint_config(cls, broker_config, event_loop=None) -> "ReviewQueueBroker":
        configured = (broker_config.kwargs or {}).get("db") if broker_config else None
        broker = cls(db_path(configured))
        logger.info("Review-Warteschlange: %s", broker.queue.store.path)
        return broker

    def publish(self, event: Dict[str, Any]) -> None:
        # Runs on Rasa's event loop for every event: in-memory filtering, a write only
        # for the few relevant rows, and an error must never reach the customer.
        try:
            self.queue.handle(event)
        except Exception:
            logger.exception("Review-Warteschlange: Ereignis nicht verarbeitet")

    async def close(self) -> None:
        self.queue.store.close()
