"""Personal data in the bot's own stores: retention, access (export) and erasure (README, "Datenschutz").

Three stores hold data about a customer, each keyed by the conversation id (Rasa's
``sender_id``):

* the conversations: Rasa's ``events`` table (SQLite ``var/tracker.db`` or PostgreSQL),
* the tickets and their outbox rows (``deliveries``: a copy of what was sent),
* the trainers' review queue (masked texts, keyed sender hash; a SQLite file or a shared
  database, ``faqbot.core.review_store``), with the events waiting to be folded into it and
  what it holds for a conversation's next turn, and the phrasings taken from it into the
  training data (``review.added_phrasing``).

``find`` resolves a request by conversation id, customer id or e-mail address to the
conversation ids it concerns; ``export`` gathers everything stored about them (GDPR Art.
15/20); ``erase`` deletes it (Art. 17), also the phrasings taken from it out of
``data/nlu``, and logs what kind and how much, never what
(table ``erasure_log`` next to the tickets, and the log). ``purge_expired`` deletes what is
older than its retention period (``retention`` in support.yml); the Rasa server runs it
every few hours, ``faqbot-datenschutz aufraeumen`` on demand.

SQLite deletes overwrite the freed space (``secure_delete``) and the write-ahead log is
emptied afterwards, so an erased text is not left in the database files. PostgreSQL frees
deleted rows at its next VACUUM (autovacuum).

Texts and contact data are stored encrypted (``faqbot.core.encryption``), so lookups by
customer id or e-mail decrypt the candidate rows and compare here, not in SQL.
``rotate_keys`` encrypts every stored value again with the current key (key rotation,
``faqbot-datenschutz schluessel-wechseln``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from faqbot.core import encryption, phrasings, review_store
from faqbot.core.encryption import decrypt
from faqbot.core.paths import PROJECT_DIR
from faqbot.core.support_config import read_support_config
from faqbot.core.tickets import CONTACT, TicketStore, deliveries, tickets
from faqbot.core.tickets import ENCRYPTED as TICKETS_ENCRYPTED

logger = logging.getLogger(__name__)

# Days each kind of data is kept (support.yml, ``retention``). Conversations: counted from
# their last message; tickets: from their creation, once closed (an open one stays);
# review queue: from the entry.
DEFAULT_RETENTION_DAYS = {"conversations": 90, "tickets": 365, "review_queue": 90}
PURGE_INTERVAL_S = 6 * 3600
LOOKUPS = ("conversation_id", "customer_id", "email")

# Rasa's SQL tracker store table (rasa.core.tracker_store.SQLTrackerStore.SQLEvent): the
# columns used here. Created by Rasa, never by this module.
events = sa.table(
    "events",
    sa.column("id", sa.Integer),
    sa.column("sender_id", sa.String),
    sa.column("type_name", sa.String),
    sa.column("timestamp", sa.Float),
    sa.column("data", sa.Text),
)
conversation_versions = sa.table("conversation_versions", sa.column("sender_id"))
EVENT_DATA = "events.data"  # the encrypted column's field name (faqbot.server.tracker_store)
erasure_log = sa.Table(
    "erasure_log",
    tickets.metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),  # who asked: "support-api", "cli:<user>", "retention"
    sa.Column("lookup", sa.String(32), nullable=False),  # by what: conversation_id / customer_id / email / retention
    sa.Column("counts", sa.Text, nullable=False),  # JSON: kind -> number of records
)


class RetentionError(ValueError):
    pass


def retention_days(config: dict[str, Any] | None = None) -> dict[str, int]:
    """Retention periods in days, from support.yml's ``retention`` section over the defaults."""
    configured = (read_support_config() if config is None else config).get("retention") or {}
    unknown = set(configured) - set(DEFAULT_RETENTION_DAYS)
    if unknown:
        raise RetentionError(f"Unbekannte Datenart unter retention: {', '.join(sorted(unknown))}")
    days = {**DEFAULT_RETENTION_DAYS, **configured}
    for kind, value in days.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RetentionError(
                f"retention.{kind} muss eine ganze Zahl von Tagen (mindestens 1) sein, nicht {value!r}"
            )
    return days


@dataclass
class DataStores:
    """Where the customer data is: Rasa's conversation store, the ticket store, the review
    queue (``review``: a SQLite file or a SQLAlchemy URL, ``review_store.location``)."""

    tracker: sa.engine.Engine
    tickets: TicketStore
    review: Path | str

    def review_store(self) -> review_store.ReviewStore | None:
        """The review queue, opened; None if it is a SQLite file that does not exist (yet)."""
        if not review_store.is_shared(self.review) and not Path(self.review).exists():
            return None
        return review_store.ReviewStore(self.review, timeout=10)


@dataclass
class Subject:
    """The conversations one request concerns."""

    lookup: str
    conversation_ids: set[str] = field(default_factory=set)


def _user_customers(data: dict[str, Any]) -> dict[str, str]:
    customer = (data.get("metadata") or {}).get("customer") if data.get("event") == "user" else None
    return {key: str(value) for key, value in customer.items() if value} if isinstance(customer, dict) else {}


def _event_names(data: dict[str, Any], key: str, value: str) -> bool:
    """Whether a stored event names this customer id or e-mail address."""
    wanted = value.casefold()
    if key == "email" and data.get("event") == "slot" and data.get("name") == "customer_email":
        return str(data.get("value") or "").casefold() == wanted
    return _user_customers(data).get("id" if key == "customer_id" else "email", "").casefold() == wanted


def find(stores: DataStores, lookup: str, value: str) -> Subject:
    """The conversations a request by conversation id, customer id or e-mail address concerns."""
    if lookup not in LOOKUPS:
        raise ValueError(f"lookup must be one of {LOOKUPS}")
    value = value.strip()
    subject = Subject(lookup)
    if not value:
        return subject
    if lookup == "conversation_id":
        subject.conversation_ids.add(value)
        return subject
    # The events that can name a customer (user messages with an integration's metadata, the
    # e-mail slot), decrypted and compared here: the stored data is encrypted. The e-mail may
    # be in any case.
    with stores.tracker.connect() as connection:
        rows = connection.execution_options(stream_results=True).execute(
            sa.select(events.c.sender_id, events.c.data).where(events.c.type_name.in_(("user", "slot")))
        )
        for sender, data in rows:
            if sender not in subject.conversation_ids and _event_names(
                json.loads(decrypt(data, EVENT_DATA)), lookup, value
            ):
                subject.conversation_ids.add(sender)
    contact_key = "id" if lookup == "customer_id" else "email"
    with stores.tickets.engine.connect() as connection:
        rows = connection.execute(sa.select(tickets.c.sender_id, tickets.c.contact)).all()
    for sender, contact in rows:
        if str(json.loads(decrypt(contact, CONTACT) or "{}").get(contact_key, "")).casefold() == value.casefold():
            subject.conversation_ids.add(sender)
    return subject


def _review_senders(conversation_ids: Iterable[str]) -> list[str]:
    """The review queue's sender keys of these conversations: the keyed hash, and the unkeyed
    sha256 that rows written before keyed hashes carry."""
    keys = []
    for conversation_id in conversation_ids:
        legacy = hashlib.sha256(conversation_id.encode("utf-8")).hexdigest()[:16]
        keys += sorted({review_store.sender_hash(conversation_id), legacy})
    return keys


def export(stores: DataStores, subject: Subject) -> dict[str, Any]:
    """Everything stored about the subject's conversations, as JSON-ready data."""
    ids = sorted(subject.conversation_ids)
    with stores.tracker.connect() as connection:
        rows = connection.execute(
            sa.select(events.c.sender_id, events.c.data).where(events.c.sender_id.in_(ids)).order_by(events.c.id)
        ).all()
    conversations: dict[str, list[Any]] = {conversation_id: [] for conversation_id in ids}
    for sender, data in rows:
        conversations[sender].append(json.loads(decrypt(data, EVENT_DATA)))
    with stores.tickets.engine.connect() as connection:
        ticket_ids = [
            row.ticket_id
            for row in connection.execute(sa.select(tickets.c.ticket_id).where(tickets.c.sender_id.in_(ids)))
        ]
    found_tickets = []
    for ticket_id in ticket_ids:
        ticket = stores.tickets.get(ticket_id)
        entry = {key: value for key, value in ticket.__dict__.items() if key != "is_new"}
        entry["deliveries"] = [delivery.__dict__ for delivery in stores.tickets.deliveries_for(ticket_id)]
        found_tickets.append(entry)
    review, pending = [], []
    senders = _review_senders(ids)
    store = stores.review_store() if senders else None
    if store is not None:
        try:
            review, pending = store.export(senders)
        finally:
            store.close()
    return {
        "created": datetime.now(timezone.utc).isoformat(),
        "lookup": subject.lookup,
        "conversations": conversations,
        "tickets": found_tickets,
        "review_queue": review,
        "review_queue_pending": pending,  # texts not yet judged for the queue
        "training_phrasings": [
            {"intent": row.get("assigned_to"), "text": row["added_phrasing"]}
            for row in review
            if row.get("added_phrasing")
        ],
    }


def _sqlite_file(engine: sa.engine.Engine) -> str | None:
    return engine.url.database if engine.dialect.name == "sqlite" and engine.url.database else None


def _delete_events(stores: DataStores, condition: Any) -> int:
    """Delete the conversations' events and their version rows (the tracker store's conflict
    check, faqbot.server.tracker_store: the sender id, maybe a customer number, goes too)."""
    with stores.tracker.begin() as connection:
        if stores.tracker.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA secure_delete=ON")
        found = connection.execute(sa.select(events.c.sender_id).where(condition).distinct())
        senders = [sender for (sender,) in found]
        if senders and sa.inspect(connection).has_table(conversation_versions.name):
            connection.execute(sa.delete(conversation_versions).where(conversation_versions.c.sender_id.in_(senders)))
        return connection.execute(sa.delete(events).where(events.c.sender_id.in_(senders))).rowcount if senders else 0


def _delete_tickets(stores: DataStores, condition: Any) -> tuple[int, int]:
    with stores.tickets.engine.begin() as connection:
        if stores.tickets.engine.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA secure_delete=ON")
        ticket_ids = [row.ticket_id for row in connection.execute(sa.select(tickets.c.ticket_id).where(condition))]
        if not ticket_ids:
            return 0, 0
        removed_deliveries = connection.execute(
            sa.delete(deliveries).where(deliveries.c.ticket_id.in_(ticket_ids))
        ).rowcount
        removed_tickets = connection.execute(sa.delete(tickets).where(tickets.c.ticket_id.in_(ticket_ids))).rowcount
    return removed_tickets, removed_deliveries


def _review_store_call(stores: DataStores, call: Callable[[review_store.ReviewStore], Any]) -> Any:
    """``call`` with the review queue opened; None if there is no queue."""
    store = stores.review_store()
    if store is None:
        return None
    try:
        return call(store)
    finally:
        store.close()


def _flush(engine: sa.engine.Engine) -> None:
    """Move what SQLite's write-ahead log still holds into the (overwritten) database file."""
    path = _sqlite_file(engine)
    if path:
        connection = sqlite3.connect(path, timeout=10)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()


def _log(stores: DataStores, actor: str, lookup: str, counts: dict[str, int]) -> None:
    erasure_log.create(stores.tickets.engine, checkfirst=True)
    with stores.tickets.engine.begin() as connection:
        connection.execute(
            erasure_log.insert().values(
                at=datetime.now(timezone.utc).isoformat(), actor=actor, lookup=lookup, counts=json.dumps(counts)
            )
        )
    logger.info("Daten gelöscht (%s, %s): %s", actor, lookup, counts)  # counts only, never what


def _remove_phrasings(taken: list[dict[str, str]], project: Path) -> list[dict[str, str]]:
    """Take the phrasings out of the training data; those that could not be removed."""
    left = []
    for phrasing in taken:
        try:
            phrasings.remove_phrasing(phrasing["intent"], phrasing["text"], project)
        except phrasings.PhrasingRefused:  # the file is restored as it was
            left.append(phrasing)
    return left


def erase(stores: DataStores, subject: Subject, actor: str, project: Path = PROJECT_DIR) -> dict[str, Any]:
    """Delete everything stored about the subject's conversations, and the phrasings the
    trainers took from them out of ``project``'s ``data/nlu`` (retrain afterwards). Returns
    the counts and the phrasings that could not be removed (a trainer must remove those)."""
    ids = sorted(subject.conversation_ids)
    removed_events = _delete_events(stores, events.c.sender_id.in_(ids)) if ids else 0
    removed_tickets, removed_deliveries = _delete_tickets(stores, tickets.c.sender_id.in_(ids)) if ids else (0, 0)
    senders = _review_senders(ids)
    erased = _review_store_call(stores, lambda store: store.erase(senders)) if senders else None
    removed_review, taken = erased or (0, [])
    _flush(stores.tracker)
    _flush(stores.tickets.engine)
    left = _remove_phrasings(taken, project)
    counts = {
        "conversations": len(ids),
        "conversation_events": removed_events,
        "tickets": removed_tickets,
        "deliveries": removed_deliveries,
        "review_queue": removed_review,
        "training_phrasings": len(taken),
    }
    _log(stores, actor, subject.lookup, counts)
    if left:
        logger.error("%d Trainingsformulierung(en) nicht entfernt: bitte von Hand aus data/nlu löschen", len(left))
    return {"counts": counts, "training_phrasings_left": left}


def purge_expired(stores: DataStores, days: dict[str, int], now: datetime | None = None) -> dict[str, int]:
    """Delete what is older than its retention period: whole conversations whose last
    message is older, closed tickets (with their deliveries), review-queue entries."""
    now = now or datetime.now(timezone.utc)
    conversations_before = (now - timedelta(days=days["conversations"])).timestamp()
    stale = (
        sa.select(events.c.sender_id)
        .group_by(events.c.sender_id)
        .having(sa.func.max(events.c.timestamp) < conversations_before)
    )
    removed_events = _delete_events(stores, events.c.sender_id.in_(stale))
    tickets_before = (now - timedelta(days=days["tickets"])).isoformat()
    removed_tickets, removed_deliveries = _delete_tickets(
        stores, sa.and_(tickets.c.status == "closed", tickets.c.created_at < tickets_before)
    )
    review_before = now - timedelta(days=days["review_queue"])
    removed_review = _review_store_call(stores, lambda store: store.purge(review_before)) or 0
    _flush(stores.tracker)
    _flush(stores.tickets.engine)
    counts = {
        "conversation_events": removed_events,
        "tickets": removed_tickets,
        "deliveries": removed_deliveries,
        "review_queue": removed_review,
    }
    if any(counts.values()):
        _log(stores, "retention", "retention", counts)
    return counts


ROTATION_BATCH = 500


@dataclass
class Rotated:
    """What a key rotation did with one kind of record."""

    encrypted: int = 0  # encrypted again with the current key (or for the first time)
    current: int = 0  # already encrypted with the current key
    changed_meanwhile: int = 0  # written by a server between reading and updating: run again


def _rotate_rows(rows: list[Any], fields: dict[str, str], update: Any, result: Rotated) -> None:
    """Encrypt one batch's values again; ``update(key, old values, new values)`` writes a row
    if it still holds the old values (never over a server's newer write) and says whether it did."""
    for row in rows:
        key, values = row[0], dict(zip(fields, row[1:], strict=True))
        new = {column: encryption.reencrypt(value, fields[column]) for column, value in values.items()}
        changes = {column: value for column, value in new.items() if value != values[column]}
        if not changes:
            result.current += 1
        elif update(key, {column: values[column] for column in changes}, changes):
            result.encrypted += 1
        else:
            result.changed_meanwhile += 1


def _rotate_table(engine: sa.engine.Engine, table: Any, key: Any, fields: dict[str, str], batch: int) -> Rotated:
    result, last = Rotated(), None
    columns = [table.c[column] for column in fields]
    while True:
        query = sa.select(key, *columns).order_by(key).limit(batch)
        with engine.connect() as connection:
            rows = connection.execute(query if last is None else query.where(key > last)).all()
        if not rows:
            return result
        with engine.begin() as connection:  # each batch in one transaction
            if engine.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA secure_delete=ON")  # the old ciphertexts are overwritten

            def update(row_key: Any, old: dict[str, Any], new: dict[str, Any]) -> bool:
                unchanged = [table.c[column].is_not_distinct_from(value) for column, value in old.items()]
                return connection.execute(table.update().where(key == row_key, *unchanged).values(**new)).rowcount == 1

            _rotate_rows(rows, fields, update, result)
        last = rows[-1][0]


def _rotate_review(stores: DataStores, batch: int) -> Rotated:
    """The entries, the waiting events and the conversations' states, counted together."""
    store = stores.review_store()  # a queue of an older version gets its columns
    if store is None:
        return Rotated()
    try:
        results = [
            _rotate_table(store.engine, review_store.review, review_store.review.c.id, review_store.ENCRYPTED, batch),
            _rotate_table(
                store.engine, review_store.inbox, review_store.inbox.c.id, {"data": review_store.INBOX_DATA}, batch
            ),
            _rotate_table(
                store.engine,
                review_store.conversations,
                review_store.conversations.c.sender,
                {"state": review_store.STATE},
                batch,
            ),
        ]
        _flush(store.engine)
    finally:
        store.close()
    return Rotated(
        sum(result.encrypted for result in results),
        sum(result.current for result in results),
        sum(result.changed_meanwhile for result in results),
    )


def rotate_keys(stores: DataStores, batch: int = ROTATION_BATCH) -> dict[str, Rotated]:
    """Encrypt every stored text and contact again with the current key of FAQBOT_DATA_KEYS
    (also values stored before encryption), in batches of one transaction each. The servers
    may keep running: a row a server changed meanwhile is left alone and counted (it was
    written with the current key if the servers already have it; else run again). Safe to
    repeat. On SQLite the old ciphertexts are overwritten in the files."""
    rotated = {
        "conversation_events": _rotate_table(stores.tracker, events, events.c.id, {"data": EVENT_DATA}, batch),
        "tickets": _rotate_table(stores.tickets.engine, tickets, tickets.c.number, TICKETS_ENCRYPTED["tickets"], batch),
        "deliveries": _rotate_table(
            stores.tickets.engine, deliveries, deliveries.c.key, TICKETS_ENCRYPTED["deliveries"], batch
        ),
        "review_queue": _rotate_review(stores, batch),
    }
    _flush(stores.tracker)
    _flush(stores.tickets.engine)
    return rotated


def stores_from_endpoints(endpoints_file: Path) -> DataStores:
    """The stores a Rasa server with this endpoints file uses (for the command line)."""
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.utils.endpoints import read_endpoint_config

    tracker = read_endpoint_config(str(endpoints_file), "tracker_store")
    settings = dict(tracker.kwargs) if tracker else {}
    if not tracker or settings.get("dialect") is None:
        raise ValueError(f"{endpoints_file}: kein SQL-Gesprächsspeicher (tracker_store mit dialect) konfiguriert")
    db = settings.get("db", "rasa.db")
    if settings.get("dialect") == "sqlite" and not Path(db).is_absolute():
        db = str(PROJECT_DIR / db)  # as the servers see it: they run in the project folder
    url = SQLTrackerStore.get_db_url(
        settings.get("dialect"),
        tracker.url,
        settings.get("port"),
        db,
        settings.get("username"),
        settings.get("password"),
        settings.get("login_db"),
        settings.get("query"),
    )
    broker = read_endpoint_config(str(endpoints_file), "event_broker")
    review = review_store.location(broker.url, (broker.kwargs or {}).get("db")) if broker else review_store.location()
    return DataStores(sa.create_engine(url), TicketStore(), review)
