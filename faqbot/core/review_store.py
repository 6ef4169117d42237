"""The review queue's storage: customer messages the bot did not handle well, for the trainers.

Filled by the Rasa server's event broker (``faqbot.server.review_broker``), read by the
trainer CLI (``faqbot-trainer review``). Texts are masked (``faqbot.core.masking``) before
they are stored, senders hashed with a key (``sender_hash``).

Where: a SQLite file on one machine (``var/review.db``, ``FAQBOT_REVIEW_DB``), or a database
several Rasa instances share (``FAQBOT_REVIEW_DB_URL``, a SQLAlchemy URL such as
``postgresql://user:pw@host/db``; ``location``). Tables:

* ``review``: the entries the trainers work through.
* ``review_inbox``: the events the instances have seen and not yet folded into entries.
* ``review_conversation``: per conversation, what its next events are judged against (the
  latest question and its entry); forgotten after ``STATE_MAX_AGE`` without events.
* ``review_consumer``: one row, locked by whoever folds the inbox (``consume``), so only one
  instance at a time does, in the order of the events.
* ``feedback``: the customers' ratings of FAQ answers in the widget („War diese Antwort
  hilfreich?“), one per answer; no text, the sender hashed. A „nicht hilfreich“ also makes an
  ``unhelpful`` entry (``entry``).

When a trainer adds a message as a phrasing, the row keeps the phrasing exactly as written
to ``data/nlu`` (``added_phrasing``) and its intent (``assigned_to``), so an erasure
request can remove it from the training data again. A queue written before these columns
existed gets them when it is first opened, and its texts are masked again with the
current rules (older versions masked e-mail, phone and IBAN only).

The texts, the added phrasings, the inbox events and the conversations' state are stored
encrypted (``faqbot.core.encryption``), a SQLite file readable only by its owner.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from faqbot.core import shared_secrets
from faqbot.core.encryption import DataKeyError, decrypt, encrypt, private_file
from faqbot.core.intents import classifier_guess, faq_id_for
from faqbot.core.masking import mask
from faqbot.core.paths import PROJECT_DIR, VAR_DIR
from faqbot.core.sql import write_transaction
from faqbot.core.text import one_line

logger = logging.getLogger(__name__)

DEFAULT_DB = VAR_DIR / "review.db"
FILE_VARIABLE, URL_VARIABLE = "FAQBOT_REVIEW_DB", "FAQBOT_REVIEW_DB_URL"
KINDS = (
    "clarification",
    "fallback",
    "out_of_scope",
    "escalation",
    "low_confidence",
    "unhelpful",
    "contradicted",  # answered with confidence, then „nein“ or asked again differently
    "small_talk",  # read as small talk or yes/no, but worded like a question
    "sample",  # a sample of confident answers: are they right?
)
# The order trainers see them in: the costly misses first (a wrong answer the customer noticed).
PRIORITY = (
    "unhelpful",
    "contradicted",
    "small_talk",
    "escalation",
    "fallback",
    "clarification",
    "out_of_scope",
    "low_confidence",
    "sample",
)
STATUSES = ("open", "assigned", "skipped", "new_question", "out_of_scope")
# Outcomes: "faq:<id>" (clarification button picked), "none_of_these", "declined",
# "escalated", "thanks", "unhelpful:<id>" (the answer of that FAQ rated „nicht hilfreich“),
# "said_no", "rephrased" (after a confident answer), "asked_for_person";
# NULL = the customer left or did nothing of these.
ESCALATED = "escalated"
# Longer messages are cut when stored: a trainer reads them, a phrasing may have 500 characters.
MAX_TEXT = 2000
HASH_SECRET = "FAQBOT_HASH_SECRET"
# The encrypted columns (the names are the associated data of their values).
TEXT, ADDED_PHRASING = "review.text", "review.added_phrasing"
ENCRYPTED = {"text": TEXT, "added_phrasing": ADDED_PHRASING}
INBOX_DATA, STATE = "review_inbox.data", "review_conversation.state"
# A conversation without events for this long is forgotten: a later "danke" is not its outcome.
STATE_MAX_AGE = timedelta(days=1)
CONSUMER = "review"
# Held while the tables are created on PostgreSQL: instances starting together on an empty
# database would otherwise race to create the same table.
SCHEMA_LOCK = 0x726576696577  # "review"

metadata = sa.MetaData()
review = sa.Table(
    "review",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("created", sa.Text, nullable=False),
    sa.Column("sender", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("intent", sa.Text),
    sa.Column("confidence", sa.Float),
    sa.Column("ranking", sa.Text, nullable=False, server_default="[]"),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text),
    sa.Column("status", sa.Text, nullable=False, server_default="open"),
    sa.Column("assigned_to", sa.Text),  # the intent the trainer assigned the message to (also out_of_scope)
    sa.Column("added_phrasing", sa.Text),  # the phrasing written to data/nlu from this message, exactly
    sa.Index("review_status", "status"),
)
inbox = sa.Table(
    "review_inbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sender", sa.Text, nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False, index=True),  # the event's timestamp: the order of a conversation
    sa.Column("data", sa.Text, nullable=False),  # JSON: what the judging needs of the event
)
conversations = sa.Table(
    "review_conversation",
    metadata,
    sa.Column("sender", sa.Text, primary_key=True),
    sa.Column("updated", sa.Text, nullable=False, index=True),
    sa.Column("state", sa.Text, nullable=False),  # JSON, written by faqbot.server.review_broker
)
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("created", sa.Text, nullable=False, index=True),
    sa.Column("sender", sa.Text, nullable=False, index=True),
    sa.Column("faq_id", sa.Text, nullable=False),
    sa.Column("answered_at", sa.Float, nullable=False),  # when the rated answer was sent
    sa.Column("helpful", sa.Boolean, nullable=False),
    sa.Column("entry", sa.Integer),  # the review entry a „nicht hilfreich“ made, if any
    sa.UniqueConstraint("sender", "faq_id", "answered_at", name="feedback_once_per_answer"),
)
consumer = sa.Table(
    "review_consumer",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text),  # host and process that folded last
    sa.Column("folded_at", sa.Text),
)


def db_path(configured: str | None = None) -> Path:
    """FAQBOT_REVIEW_DB, else the configured file (relative to the project), else var/review.db."""
    path = Path(os.environ.get(FILE_VARIABLE) or configured or DEFAULT_DB)
    return path if path.is_absolute() else PROJECT_DIR / path


def location(url: str | None = None, db: str | None = None) -> str | Path:
    """Where the queue is: the configured URL, else FAQBOT_REVIEW_DB_URL, else the SQLite file
    (``db_path``). A configured URL that is empty (an empty variable) is refused, never
    replaced by a file of this host."""
    if url is not None:
        if not str(url).strip():
            raise ValueError(
                "Die Review-Warteschlange hat eine leere Datenbank-URL (event_broker.url): "
                f"Bitte setzen Sie {URL_VARIABLE}."
            )
        return str(url)
    return os.environ.get(URL_VARIABLE) or db_path(db)


def is_shared(where: str | Path) -> bool:
    """Whether the queue is in a database server (not a SQLite file of this host)."""
    return isinstance(where, str) and "://" in where and not where.startswith("sqlite")


@functools.lru_cache(maxsize=4)
def _keyed(secret: str) -> hmac.HMAC:
    return hmac.new(secret.encode("utf-8"), digestmod="sha256")


def sender_hash(sender_id: str) -> str:
    """The conversation's key in the queue: groups its messages, finds no customer.

    HMAC-SHA256 with FAQBOT_HASH_SECRET (``faqbot.core.shared_secrets``; read at every
    call, so a changed secret takes effect at once): without the secret, hashing a
    candidate conversation id finds nothing. Rows written before the key (plain sha256)
    keep their hashes; only the grouping of those old rows with new ones is lost.
    """
    keyed = _keyed(shared_secrets.require(HASH_SECRET)).copy()
    keyed.update(sender_id.encode("utf-8"))
    return keyed.hexdigest()[:16]


def stored_text(text: str) -> str:
    """A text as the queue stores it: masked, on one line, cut."""
    # Mask before cutting, so that no half e-mail address escapes the mask; control
    # characters would garble the trainer's terminal.
    return one_line(mask(text))[:MAX_TEXT]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Entry:
    id: int
    created: str
    sender: str
    text: str
    intent: str | None
    confidence: float | None
    ranking: list[dict[str, Any]]
    kind: str
    outcome: str | None
    status: str
    assigned_to: str | None
    added_phrasing: str | None = None

    def _best_intent(self) -> dict[str, Any]:
        return classifier_guess(self.ranking)

    @property
    def guess(self) -> str | None:
        """The FAQ id the bot thought most likely (also when it was unsure), if an FAQ."""
        return faq_id_for(self._best_intent().get("name"))

    @property
    def guess_confidence(self) -> float | None:
        return self._best_intent().get("confidence")

    @property
    def picked_faq(self) -> str | None:
        """The FAQ id of the clarification button the customer picked, if any."""
        return self.outcome[4:] if self.outcome and self.outcome.startswith("faq:") else None


@dataclass
class InboxEvent:
    id: int
    sender: str  # the conversation's sender_hash
    fact: dict[str, Any] | None  # None: could not be read (e.g. its key is gone)


@dataclass
class Consumption:
    """One consumer's turn, in one transaction: the events to fold, oldest first, and the state
    of their conversations (``states``: sender -> JSON-ready state, None to forget it)."""

    connection: sa.engine.Connection
    events: list[InboxEvent]
    states: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def record(self, *args: Any, **kwargs: Any) -> int:
        return _insert_entry(self.connection, *args, **kwargs)

    def set_outcome(self, entry_id: int, outcome: str) -> None:
        _set_outcome(self.connection, entry_id, outcome)

    def new_feedback(self, sender: str, faq_id: str, answered_at: float) -> bool:
        """Whether this answer has no rating yet (the first one counts)."""
        query = sa.select(feedback.c.id).where(
            feedback.c.sender == sender, feedback.c.faq_id == faq_id, feedback.c.answered_at == answered_at
        )
        return self.connection.execute(query).first() is None

    def add_feedback(self, sender: str, faq_id: str, helpful: bool, answered_at: float, entry: int | None) -> None:
        self.connection.execute(
            feedback.insert().values(
                created=_now(), sender=sender, faq_id=faq_id, helpful=helpful, answered_at=answered_at, entry=entry
            )
        )


def _insert_entry(
    connection: sa.engine.Connection,
    text: str,
    sender: str,
    kind: str,
    intent: str | None = None,
    confidence: float | None = None,
    ranking: list[dict[str, Any]] | None = None,
    outcome: str | None = None,
    created: str | None = None,
) -> int:
    text = stored_text(text)  # masked here, so no caller can forget it
    if kind not in KINDS:
        raise ValueError(f"Unbekannte Art: {kind}")
    top3 = [
        {"name": item["name"], "confidence": round(float(item.get("confidence") or 0), 4)}
        for item in (ranking or [])[:3]
    ]
    return connection.execute(
        review.insert().values(
            created=created or _now(),
            sender=sender,
            text=encrypt(text, TEXT),
            intent=intent,
            confidence=None if confidence is None else round(float(confidence), 4),
            ranking=json.dumps(top3),
            kind=kind,
            outcome=outcome,
        )
    ).inserted_primary_key[0]


def _set_outcome(connection: sa.engine.Connection, entry_id: int, outcome: str) -> None:
    # The first reaction counts; an escalation later in the conversation overrides it.
    condition = review.c.outcome.is_(None) if outcome != ESCALATED else sa.true()
    connection.execute(review.update().where(review.c.id == entry_id, condition).values(outcome=outcome))


def _engine(url: str, timeout: float) -> sa.engine.Engine:
    if not url.startswith("sqlite"):
        return sa.create_engine(
            url,
            future=True,
            pool_pre_ping=True,
            hide_parameters=True,  # errors in the log name no values
            connect_args={"connect_timeout": max(2, round(timeout))},
        )
    # Connections stay open (the write-ahead log with them); the writer thread and a
    # privacy request's thread may share the store.
    engine = sa.create_engine(
        url,
        future=True,
        hide_parameters=True,
        poolclass=sa.pool.QueuePool,
        connect_args={"timeout": timeout, "check_same_thread": False},
    )

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA journal_mode=WAL")  # the bot writes while a trainer reads
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")  # WAL: safe, and no fsync per row
        dbapi_connection.execute("PRAGMA secure_delete=ON")  # folded and erased texts are overwritten

    return engine


def _texts(value: Any) -> list[str]:
    """Every "text" in a JSON-ready value (a state or an inbox event)."""
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in ([item] if key == "text" else _texts(item)) if text]
    return [text for item in value for text in _texts(item)] if isinstance(value, list) else []


class ReviewStore:
    """The queue in SQLite (WAL: the bot writes while a trainer reads) or a shared database."""

    def __init__(self, where: str | Path | None = None, timeout: float = 5.0) -> None:
        """``where``: a SQLAlchemy URL or a SQLite file (default: ``location()``). ``timeout``:
        seconds a write waits for another connection's lock (SQLite) or a connection (server)."""
        where = location() if where is None else where
        url = where if is_shared(where) or str(where).startswith("sqlite:") else f"sqlite:///{where}"
        self.engine = _engine(str(url), timeout)
        self.path = Path(self.engine.url.database) if self.engine.dialect.name == "sqlite" else None
        if self.path:
            private_file(self.path)
        try:
            if not self._schema_is_current():
                self._create_schema()
        except BaseException:
            self.engine.dispose()
            raise

    def __repr__(self) -> str:  # never the password of a URL
        return f"ReviewStore({self.path or self.engine.url.render_as_string(hide_password=True)})"

    def _schema_is_current(self) -> bool:
        inspector = sa.inspect(self.engine)
        if not set(metadata.tables) <= set(inspector.get_table_names()):
            return False
        if "added_phrasing" not in {column["name"] for column in inspector.get_columns("review")}:
            return False
        with self.engine.connect() as connection:
            return connection.execute(sa.select(consumer.c.name).where(consumer.c.name == CONSUMER)).first() is not None

    def _create_schema(self) -> None:
        """The tables, the consumer row, and for a queue of an older version its column and
        its texts masked again; one process at a time."""
        with write_transaction(self.engine) as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(SCHEMA_LOCK)))
            metadata.create_all(connection)
            if "added_phrasing" not in {column["name"] for column in sa.inspect(connection).get_columns("review")}:
                connection.execute(sa.text("ALTER TABLE review ADD COLUMN added_phrasing TEXT"))
                for row in connection.execute(sa.select(review.c.id, review.c.text)).all():
                    stored = decrypt(row.text, TEXT)
                    text = stored_text(stored)
                    if text != stored:
                        connection.execute(
                            review.update().where(review.c.id == row.id).values(text=encrypt(text, TEXT))
                        )
            if connection.execute(sa.select(consumer.c.name).where(consumer.c.name == CONSUMER)).first() is None:
                connection.execute(consumer.insert().values(name=CONSUMER))

    def close(self) -> None:
        self.engine.dispose()

    # --- the entries ---

    def record(
        self,
        text: str,
        sender: str,
        kind: str,
        intent: str | None = None,
        confidence: float | None = None,
        ranking: list[dict[str, Any]] | None = None,
        outcome: str | None = None,
        created: str | None = None,
    ) -> int:
        """Store one message (masked here, so no caller can forget it); returns its id."""
        with self.engine.begin() as connection:
            return _insert_entry(connection, text, sender, kind, intent, confidence, ranking, outcome, created)

    def set_outcome(self, entry_id: int, outcome: str) -> None:
        """The first reaction counts; an escalation later in the conversation overrides it."""
        with self.engine.begin() as connection:
            _set_outcome(connection, entry_id, outcome)

    def set_status(self, entry_id: int, status: str, assigned_to: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"Unbekannter Status: {status}")
        with self.engine.begin() as connection:
            connection.execute(
                review.update().where(review.c.id == entry_id).values(status=status, assigned_to=assigned_to)
            )

    def set_added_phrasing(self, entry_id: int, intent: str, phrasing: str) -> None:
        """The phrasing written to the training data from this message, and its intent."""
        with self.engine.begin() as connection:
            connection.execute(
                review.update()
                .where(review.c.id == entry_id)
                .values(added_phrasing=encrypt(phrasing, ADDED_PHRASING), assigned_to=intent)
            )

    def entries(
        self,
        status: str | None = "open",
        kind: str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
        by_priority: bool = False,
    ) -> list[Entry]:
        query = sa.select(review).order_by(review.c.id)
        if by_priority:  # the costly misses first, each kind oldest first
            rank = sa.case({kind: rank for rank, kind in enumerate(PRIORITY)}, value=review.c.kind, else_=len(PRIORITY))
            query = sa.select(review).order_by(rank, review.c.id)
        if status:
            query = query.where(review.c.status == status)
        if kind:
            query = query.where(review.c.kind == kind)
        if since:  # ISO timestamps in UTC compare correctly as text
            query = query.where(review.c.created >= since.astimezone(timezone.utc).isoformat(timespec="seconds"))
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [Entry(**{**decrypted_row(row), "ranking": json.loads(row.ranking)}) for row in rows]

    def feedback_counts(self, since: datetime | None = None) -> dict[str, dict[str, int]]:
        """Per FAQ id, the ratings of its answers: ``{"helpful": n, "unhelpful": m}``."""
        query = sa.select(feedback.c.faq_id, feedback.c.helpful, sa.func.count()).group_by(
            feedback.c.faq_id, feedback.c.helpful
        )
        if since:
            query = query.where(feedback.c.created >= since.astimezone(timezone.utc).isoformat(timespec="seconds"))
        counts: dict[str, dict[str, int]] = {}
        with self.engine.connect() as connection:
            for faq_id, helpful, count in connection.execute(query):
                counts.setdefault(faq_id, {"helpful": 0, "unhelpful": 0})["helpful" if helpful else "unhelpful"] = count
        return counts

    # --- the inbox, and its one consumer at a time ---

    def append(self, events: Iterable[tuple[str, float, dict[str, Any]]]) -> None:
        """Add (sender hash, timestamp, event) to the inbox, the events' texts masked."""
        rows = [
            {
                "sender": sender,
                "at": at,
                "data": encrypt(
                    json.dumps({**event, "text": stored_text(event["text"])} if "text" in event else event), INBOX_DATA
                ),
            }
            for sender, at, event in events
        ]
        if rows:
            with self.engine.begin() as connection:
                connection.execute(inbox.insert(), rows)

    def has_inbox(self) -> bool:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(inbox.c.id).limit(1)).first() is not None

    @contextlib.contextmanager
    def consume(self, settle_s: float, limit: int) -> Iterator[Consumption | None]:
        """The inbox's events older than ``settle_s`` (an instance may still be writing the
        turn before), at most ``limit``, ordered by their timestamps, with their
        conversations' states; None if another process is consuming right now. Whatever the
        caller records and sets in ``states`` is committed with the events' removal."""
        with write_transaction(self.engine) as connection:
            if not _lock_consumer(connection, wait=False):
                yield None
                return
            connection.execute(
                consumer.update()
                .where(consumer.c.name == CONSUMER)
                .values(holder=f"{socket.gethostname()}:{os.getpid()}", folded_at=_now())
            )
            rows = connection.execute(
                sa.select(inbox)
                .where(inbox.c.at <= time.time() - settle_s)
                .order_by(inbox.c.at, inbox.c.id)
                .limit(limit)
            ).all()
            batch = Consumption(
                connection, [InboxEvent(row.id, row.sender, _read(row.data, INBOX_DATA)) for row in rows]
            )
            batch.states = self._states(connection, {event.sender for event in batch.events})
            yield batch
            if rows:
                connection.execute(inbox.delete().where(inbox.c.id.in_([row.id for row in rows])))
                self._save_states(connection, batch.states)
                stale = (datetime.now(timezone.utc) - STATE_MAX_AGE).isoformat(timespec="seconds")
                connection.execute(conversations.delete().where(conversations.c.updated < stale))

    @staticmethod
    def _states(connection: sa.engine.Connection, senders: set[str]) -> dict[str, dict[str, Any] | None]:
        states: dict[str, dict[str, Any] | None] = dict.fromkeys(senders)
        if senders:
            query = sa.select(conversations).where(conversations.c.sender.in_(senders))
            for row in connection.execute(query):
                states[row.sender] = _read(row.state, STATE)
        return states

    @staticmethod
    def _save_states(connection: sa.engine.Connection, states: dict[str, dict[str, Any] | None]) -> None:
        connection.execute(conversations.delete().where(conversations.c.sender.in_(list(states))))
        kept = [
            {"sender": sender, "updated": _now(), "state": encrypt(json.dumps(state), STATE)}
            for sender, state in states.items()
            if state
        ]
        if kept:
            connection.execute(conversations.insert(), kept)

    # --- privacy (faqbot.core.privacy) ---

    def export(self, senders: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
        """The entries and ratings of these senders (without the sender key), and the texts
        still waiting in the inbox or held for their conversation's next turn."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(review).where(review.c.sender.in_(senders)).order_by(review.c.id))
            entries = [{key: value for key, value in decrypted_row(row).items() if key != "sender"} for row in rows]
            ratings = connection.execute(
                sa.select(feedback.c.created, feedback.c.faq_id, feedback.c.helpful)
                .where(feedback.c.sender.in_(senders))
                .order_by(feedback.c.id)
            )
            entries += [{"kind": "rating", **row._mapping} for row in ratings]
            waiting = connection.execute(
                sa.select(inbox.c.data).where(inbox.c.sender.in_(senders)).order_by(inbox.c.at)
            )
            held = connection.execute(sa.select(conversations.c.state).where(conversations.c.sender.in_(senders)))
            texts = [text for (data,) in waiting for text in _texts(_read(data, INBOX_DATA))]
            texts += [text for (state,) in held for text in _texts(_read(state, STATE))]
        return entries, texts

    def erase(self, senders: list[str]) -> tuple[int, list[dict[str, str]]]:
        """Delete everything of these senders; the number of entries and the phrasings taken from them."""
        with write_transaction(self.engine) as connection:
            _lock_consumer(connection, wait=True)  # no fold writes these conversations meanwhile
            added = [
                {"intent": row.assigned_to or row.intent, "text": decrypt(row.added_phrasing, ADDED_PHRASING)}
                for row in connection.execute(
                    sa.select(review.c.assigned_to, review.c.intent, review.c.added_phrasing).where(
                        review.c.sender.in_(senders), review.c.added_phrasing.is_not(None)
                    )
                )
            ]
            removed = connection.execute(review.delete().where(review.c.sender.in_(senders))).rowcount
            connection.execute(inbox.delete().where(inbox.c.sender.in_(senders)))
            connection.execute(conversations.delete().where(conversations.c.sender.in_(senders)))
            connection.execute(feedback.delete().where(feedback.c.sender.in_(senders)))
        self._flush()
        return removed, added

    def purge(self, before: datetime) -> int:
        """Delete entries (and anything waiting) older than ``before``; the number of entries."""
        with write_transaction(self.engine) as connection:
            _lock_consumer(connection, wait=True)
            iso = before.astimezone(timezone.utc).isoformat(timespec="seconds")
            removed = connection.execute(review.delete().where(review.c.created < iso)).rowcount
            connection.execute(feedback.delete().where(feedback.c.created < iso))
            connection.execute(inbox.delete().where(inbox.c.at < before.timestamp()))
            connection.execute(conversations.delete().where(conversations.c.updated < iso))
        self._flush()
        return removed

    def _flush(self) -> None:
        """Move what SQLite's write-ahead log still holds into the (overwritten) database file."""
        if self.path:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _lock_consumer(connection: sa.engine.Connection, wait: bool) -> bool:
    """Take the consumer row's lock for this transaction; False if another holds it and
    ``wait`` is False. SQLite: the transaction holds the database's write lock already."""
    if connection.dialect.name != "postgresql":
        return True
    query = sa.select(consumer.c.name).where(consumer.c.name == CONSUMER).with_for_update(skip_locked=not wait)
    return connection.execute(query).first() is not None


def _read(value: str, field_name: str) -> dict[str, Any] | None:
    try:
        return json.loads(decrypt(value, field_name))
    except (DataKeyError, ValueError) as error:  # no key for it any more: dropped, not stuck
        logger.error("Review-Warteschlange: ein gespeichertes Ereignis ist nicht lesbar und wird verworfen (%s)", error)
        return None


def decrypted_row(row: Any) -> dict[str, Any]:
    """A row of the queue with its texts decrypted."""
    entry = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    for column, field_name in ENCRYPTED.items():
        if column in entry:
            entry[column] = decrypt(entry[column], field_name)
    return entry
