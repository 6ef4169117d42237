"""Escalations to the support team: tickets with the conversation transcript.

Tickets are stored with SQLAlchemy, in SQLite by default (``var/tickets.db``); set
``FAQBOT_TICKET_DB_URL`` to a PostgreSQL URL to share them between several action servers
and Rasa instances. Question, transcript and contact of a ticket and the payload of an
outbox row are stored encrypted (``faqbot.core.encryption``); a SQLite file is readable
only by its owner.

The database keeps the rules that several processes must share: one open ticket per
conversation is a partial unique index, and an outbox row is claimed by one worker at a
time (``claim_next``: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a compare-and-swap on SQLite).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from faqbot.core.encryption import decrypt, encrypt, private_file
from faqbot.core.knowledge import CachedKnowledge, FaqEntry, KnowledgeError
from faqbot.core.paths import VAR_DIR
from faqbot.core.sql import write_transaction

logger = logging.getLogger(__name__)

DEFAULT_DB = VAR_DIR / "tickets.db"
URL_VARIABLE = "FAQBOT_TICKET_DB_URL"
# Held while the tables are created on PostgreSQL: servers starting together on an empty
# database would otherwise race to create the same table.
SCHEMA_LOCK = 0x7469636B657473  # "tickets"
# Due rows a worker tries to claim on SQLite before it gives up for this round (others took them).
CLAIM_CANDIDATES = 10
# The delivery target of the transcript e-mail to the customer (the others go to the support team).
CUSTOMER_MAIL = "customer"
# The delivery target of agents' replies and closures to a REST integration's callback URL.
CALLBACK = "callback"
# The encrypted columns (the names are the associated data of their values).
QUESTION, TRANSCRIPT, CONTACT, RESOLUTION, PAYLOAD = (
    "tickets.question",
    "tickets.transcript",
    "tickets.contact",
    "tickets.resolution",
    "deliveries.payload",
)
ENCRYPTED = {
    "tickets": {"question": QUESTION, "transcript": TRANSCRIPT, "contact": CONTACT, "resolution": RESOLUTION},
    "deliveries": {"payload": PAYLOAD},
}

metadata = sa.MetaData()
tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ticket_id", sa.String(32), unique=True),
    sa.Column("sender_id", sa.String(255), nullable=False, index=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(64)),
    sa.Column("question", sa.Text),
    sa.Column("faq_guess", sa.String(128)),
    sa.Column("confidence", sa.Float),
    sa.Column("transcript", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default="open"),
    sa.Column("contact", sa.Text),  # JSON: conversation id, e-mail the customer gave
    sa.Column("closed_at", sa.String(32)),
    sa.Column("resolution", sa.Text),  # what the support team wrote when closing, for the customer
)
# Columns later versions added, with their SQL type, for databases of earlier versions.
ADDED_COLUMNS = {"contact": "TEXT", "closed_at": "VARCHAR(32)", "resolution": "TEXT"}
# One open ticket per conversation, also for several action servers at once.
ONE_OPEN_TICKET = sa.Index(
    "tickets_one_open_per_sender",
    tickets.c.sender_id,
    unique=True,
    sqlite_where=tickets.c.status == "open",
    postgresql_where=tickets.c.status == "open",
)
# The outbox: one row per ticket event and delivery target, written with the ticket.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("key", sa.String(96), primary_key=True),  # stable idempotency key
    sa.Column("ticket_id", sa.String(32), nullable=False, index=True),
    sa.Column("target", sa.String(16), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending / delivered / failed
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.String(32), nullable=False, index=True),
    sa.Column("last_error", sa.Text),
    sa.Column("delivered_at", sa.String(32)),
)
PENDING = sa.Index("deliveries_pending", deliveries.c.status, deliveries.c.next_attempt_at)
# Created for databases of earlier versions too (create_all makes indexes only with their table).
INDEXES = (ONE_OPEN_TICKET, PENDING)


@dataclass
class Ticket:
    ticket_id: str
    sender_id: str
    created_at: str
    channel: str | None
    question: str | None
    faq_guess: str | None
    confidence: float | None
    transcript: list[dict[str, Any]]
    status: str
    contact: dict[str, Any]
    closed_at: str | None = None
    resolution: str | None = None
    is_new: bool = False

    def payload(self) -> dict[str, Any]:
        """The JSON the support team receives for a new ticket (README, "Webhook body"),
        with the guessed FAQ's question and category as the team reads them."""
        guess = _faq_entry(self.faq_guess)
        return {
            "event": "created",
            "ticket_id": self.ticket_id,
            "created": self.created_at,
            "channel": self.channel,
            "customer": self.contact,
            "question": self.question,
            "faq_guess": self.faq_guess,
            "faq_guess_question": guess.question if guess else None,
            "faq_guess_category": guess.category if guess else None,
            "confidence": self.confidence,
            "transcript": self.transcript,
        }

    def closed_payload(self) -> dict[str, Any]:
        """The JSON of the ticket's closure: for the support team's receivers and the customer's mail."""
        return {
            "event": "closed",
            "ticket_id": self.ticket_id,
            "created": self.closed_at,
            "channel": self.channel,
            "customer": self.contact,
            "question": self.question,
            "resolution": self.resolution,
        }

    def message_payload(self, line: dict[str, Any], number: int) -> dict[str, Any]:
        """The JSON for a message the customer wrote after the handoff."""
        return {
            "event": "message",
            "ticket_id": self.ticket_id,
            "number": number,
            "created": line["time"],
            "channel": self.channel,
            "customer": self.contact,
            "text": line["text"],
        }


_knowledge = CachedKnowledge()


def _faq_entry(faq_id: str | None) -> FaqEntry | None:
    """The FAQ entry of a guess, if it still exists (the FAQ may have changed since)."""
    try:
        return _knowledge.entries().get(faq_id) if faq_id else None
    except KnowledgeError:
        return None


@dataclass
class Delivery:
    key: str
    ticket_id: str
    target: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: str
    last_error: str | None
    delivered_at: str | None


def database_url() -> str:
    url = os.environ.get("FAQBOT_TICKET_DB_URL")
    if url:
        return url
    path = Path(os.environ.get("FAQBOT_TICKET_DB", DEFAULT_DB))
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def transcript_from_events(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The customer's and the bot's messages, in order, from Rasa tracker events."""
    lines = []
    for event in events:
        if event.get("event") in ("user", "bot") and (event.get("text") or "").strip():
            lines.append(
                {
                    "from": "kunde" if event["event"] == "user" else "bot",
                    "text": event["text"],
                    "time": datetime.fromtimestamp(event.get("timestamp") or 0, timezone.utc).isoformat(),
                }
            )
    return lines


def customer_transcript(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as the customer saw it: a button click as the button's title, without
    messages the customer never wrote (the widget's greeting request, the support side's)."""
    titles: dict[str, str] = {}
    shown = []
    for event in events:
        if event.get("event") == "bot":
            buttons = (event.get("data") or {}).get("buttons") or []
            titles = {button.get("payload"): button.get("title") for button in buttons} or titles
        text = event.get("text") or ""
        if event.get("event") == "user" and text.startswith("/"):
            if text not in titles:
                continue
            event = {**event, "text": titles[text]}
        elif event.get("event") == "user" and text.startswith("EXTERNAL:"):
            continue
        shown.append(event)
    return transcript_from_events(shown)


def _due(now: datetime, target: str | None = None) -> sa.sql.Select:
    """Pending rows whose time has come, oldest first; of one target, or of all."""
    query = sa.select(deliveries).where(
        deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now.isoformat()
    )
    if target is not None:
        query = query.where(deliveries.c.target == target)
    return query.order_by(deliveries.c.next_attempt_at)


def _index_names(bind: sa.engine.Engine | sa.engine.Connection) -> set[str]:
    # Read from the catalogue: SQLAlchemy's reflection warns about partial indexes.
    if bind.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'index'"
    else:
        query = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    if isinstance(bind, sa.engine.Connection):
        return {name for (name,) in bind.exec_driver_sql(query)}
    with bind.connect() as connection:
        return {name for (name,) in connection.exec_driver_sql(query)}


def _close_duplicate_open_tickets(connection: sa.engine.Connection) -> None:
    """Before the unique index: earlier versions could open two tickets for one conversation
    (several action servers). The newest stays open, as the bot added to it; the older close."""
    newest = (
        sa.select(tickets.c.sender_id, sa.func.max(tickets.c.number))
        .where(tickets.c.status == "open")
        .group_by(tickets.c.sender_id)
        .having(sa.func.count() > 1)
    )
    for sender_id, number in connection.execute(newest).all():
        older = sa.and_(tickets.c.sender_id == sender_id, tickets.c.status == "open", tickets.c.number < number)
        closed = [row.ticket_id for row in connection.execute(sa.select(tickets.c.ticket_id).where(older))]
        connection.execute(tickets.update().where(older).values(status="closed"))
        logger.warning("Doppelte offene Tickets eines Gesprächs geschlossen: %s", ", ".join(map(str, closed)))


class TicketStore:
    def __init__(self, url: str | None = None) -> None:
        # hide_parameters: a database error in the log shows no values (conversation ids, ciphertexts).
        self.engine = sa.create_engine(url or database_url(), future=True, pool_pre_ping=True, hide_parameters=True)
        if self.engine.dialect.name not in ("sqlite", "postgresql"):  # the partial unique index
            raise ValueError(f"Tickets: nur SQLite und PostgreSQL werden unterstützt, nicht {self.engine.dialect.name}")
        if self.engine.dialect.name == "sqlite" and self.engine.url.database:
            private_file(self.engine.url.database)
        if not self._schema_is_current():
            self._create_schema()

    def _schema_is_current(self) -> bool:
        inspector = sa.inspect(self.engine)
        return (
            {"tickets", "deliveries"} <= set(inspector.get_table_names())
            and set(ADDED_COLUMNS) <= {column["name"] for column in inspector.get_columns("tickets")}
            and {index.name for index in INDEXES} <= _index_names(self.engine)
        )

    def _create_schema(self) -> None:
        """Tables and indexes, also those an earlier version did not have; one process at a time."""
        with write_transaction(self.engine) as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(SCHEMA_LOCK)))
            metadata.create_all(connection)
            present = {column["name"] for column in sa.inspect(connection).get_columns("tickets")}
            for column, sql_type in ADDED_COLUMNS.items():
                if column not in present:
                    connection.execute(sa.text(f"ALTER TABLE tickets ADD COLUMN {column} {sql_type}"))
            if ONE_OPEN_TICKET.name not in _index_names(connection):
                _close_duplicate_open_tickets(connection)
            for index in INDEXES:
                connection.execute(sa.schema.CreateIndex(index, if_not_exists=True))

    def open_ticket_for(self, sender_id: str) -> Ticket | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(tickets)
                .where(tickets.c.sender_id == sender_id, tickets.c.status == "open")
                .order_by(tickets.c.number.desc())
            ).first()
        return self._ticket(row) if row else None

    def latest_ticket_for(self, sender_id: str) -> Ticket | None:
        """The conversation's newest ticket, open or closed."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(tickets).where(tickets.c.sender_id == sender_id).order_by(tickets.c.number.desc())
            ).first()
        return self._ticket(row) if row else None

    def queue_transcript(self, ticket: Ticket, transcript: list[dict[str, Any]], at_most: int) -> int | None:
        """Queue the conversation's transcript for the e-mail address on ``ticket``
        (``CUSTOMER_MAIL``); the how-manieth it is, or None if ``at_most`` were queued already."""
        now = datetime.now(timezone.utc)
        prefix = f"{ticket.ticket_id}-transcript-"
        with write_transaction(self.engine) as connection:
            # The ticket's row locked (SQLite: the database): two requests at once get two numbers.
            connection.execute(
                sa.select(tickets.c.number).where(tickets.c.ticket_id == ticket.ticket_id).with_for_update()
            )
            sent = connection.execute(
                sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.key.startswith(prefix))
            ).scalar_one()
            if sent >= at_most:
                return None
            payload = {
                "event": "transcript",
                "ticket_id": ticket.ticket_id,
                "created": now.isoformat(),
                "to": ticket.contact["email"],
                "transcript": transcript,
            }
            self._queue(connection, ticket.ticket_id, f"transcript-{sent + 1}", payload, [CUSTOMER_MAIL], now)
        return sent + 1

    def get(self, ticket_id: str) -> Ticket | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(tickets).where(tickets.c.ticket_id == ticket_id)).first()
        return self._ticket(row) if row else None

    def create(
        self,
        sender_id: str,
        channel: str | None,
        question: str | None,
        faq_guess: str | None,
        confidence: float | None,
        transcript: list[dict[str, Any]],
        targets: Iterable[str] = (),
        contact: dict[str, Any] | None = None,
    ) -> Ticket:
        """A new ticket, or the conversation's open ticket if there is one already.

        The ticket and its outbox rows (one per delivery target) are committed together,
        before anything is sent, so no escalation can get lost between store and send.
        The database's unique index decides between two processes opening one at once.
        """
        existing = self.open_ticket_for(sender_id)
        if existing:
            return existing
        now = datetime.now(timezone.utc)
        try:
            with self.engine.begin() as connection:
                number = connection.execute(
                    tickets.insert().values(
                        sender_id=sender_id,
                        created_at=now.isoformat(),
                        channel=channel,
                        question=encrypt(question, QUESTION),
                        faq_guess=faq_guess,
                        confidence=confidence,
                        transcript=encrypt(json.dumps(transcript, ensure_ascii=False), TRANSCRIPT),
                        status="open",
                        contact=encrypt(json.dumps(contact or {"id": sender_id}, ensure_ascii=False), CONTACT),
                    )
                ).inserted_primary_key[0]
                ticket_id = f"T-{now:%Y%m%d}-{number:05d}"
                connection.execute(tickets.update().where(tickets.c.number == number).values(ticket_id=ticket_id))
                ticket = self._ticket(connection.execute(sa.select(tickets).where(tickets.c.number == number)).first())
                self._queue(connection, ticket_id, "created", ticket.payload(), targets, now)
        except sa.exc.IntegrityError:
            existing = self.open_ticket_for(sender_id)  # opened by another process meanwhile
            if existing is None:
                raise
            return existing
        ticket.is_new = True
        return ticket

    def add_reply(self, ticket_id: str, text: str, key: str | None = None) -> tuple[Ticket, int, bool]:
        """An agent's reply to an open ticket, added to its transcript (``from``: support);
        the ticket, the reply's position and whether it is new: a reply with the ``key`` of
        an earlier one (a mail delivered twice, a double click) is not added again.
        LookupError if the ticket is not open."""
        return self._append_line(ticket_id, "support", text, key=key)

    def mail_reply(self, ticket: Ticket, number: int) -> bool:
        """Queue the agent's reply at ``number`` for the customer's mail (they were not in
        the chat); False if the ticket has no address."""
        if not ticket.contact.get("email"):
            return False
        line = ticket.transcript[number - 1]
        payload = ticket.message_payload(line, number) | {"event": "reply", "to": ticket.contact["email"]}
        with self.engine.begin() as connection:
            self._queue(
                connection, ticket.ticket_id, f"reply-{number}", payload, [CUSTOMER_MAIL], datetime.now(timezone.utc)
            )
        return True

    def queue_callback(self, ticket_id: str, event: str, callback: dict[str, Any]) -> None:
        """Queue a callback to the REST integration of the ticket's conversation (target
        ``CALLBACK``; URL, body and signature made by the Rasa server, which holds the token)."""
        with self.engine.begin() as connection:
            self._queue(connection, ticket_id, event, callback, [CALLBACK], datetime.now(timezone.utc))

    def append_message(self, ticket_id: str, text: str, targets: Iterable[str] = ()) -> int:
        """Add a message the customer wrote after the handoff to the open ticket's
        transcript and queue it for delivery, in one transaction. Returns its position
        in the transcript (part of the delivery key, so it is delivered once)."""
        return self._append_line(ticket_id, "kunde", text, targets)[1]

    def _append_line(
        self, ticket_id: str, speaker: str, text: str, targets: Iterable[str] = (), key: str | None = None
    ) -> tuple[Ticket, int, bool]:
        """Add a line to the open ticket's transcript and queue it as ``message-<position>``
        for ``targets``, in one transaction; the ticket, the line's position and whether it
        was added (not when a line with this ``key`` is there already). LookupError if the
        ticket is not open."""
        now = datetime.now(timezone.utc)
        line = {"from": speaker, "text": text, "time": now.isoformat(), **({"key": key} if key else {})}
        with write_transaction(self.engine) as connection:
            # The row locked (SQLite: the database), so that two servers cannot append to one transcript at once.
            row = connection.execute(
                sa.select(tickets).where(tickets.c.ticket_id == ticket_id, tickets.c.status == "open").with_for_update()
            ).first()
            if row is None:
                raise LookupError(f"no open ticket {ticket_id}")
            ticket = self._ticket(row)
            for number, earlier in enumerate(ticket.transcript, start=1):
                if key and earlier.get("key") == key:
                    return ticket, number, False
            ticket.transcript.append(line)
            number = len(ticket.transcript)
            connection.execute(
                tickets.update()
                .where(tickets.c.number == row.number)
                .values(transcript=encrypt(json.dumps(ticket.transcript, ensure_ascii=False), TRANSCRIPT))
            )
            self._queue(connection, ticket_id, f"message-{number}", ticket.message_payload(line, number), targets, now)
        return ticket, number, True

    @staticmethod
    def _queue(
        connection, ticket_id: str, event: str, payload: dict[str, Any], targets: Iterable[str], now: datetime
    ) -> None:
        """Outbox rows, one per target, in the caller's transaction."""
        for target in targets:
            connection.execute(
                deliveries.insert().values(
                    key=f"{ticket_id}-{event}-{target}",
                    ticket_id=ticket_id,
                    target=target,
                    payload=encrypt(json.dumps(payload, ensure_ascii=False), PAYLOAD),
                    status="pending",
                    attempts=0,
                    next_attempt_at=now.isoformat(),
                )
            )

    def open_tickets(self) -> list[Ticket]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(tickets).where(tickets.c.status == "open").order_by(tickets.c.number)
            ).all()
        return [self._ticket(row) for row in rows]

    def close(self, ticket_id: str, resolution: str | None = None, targets: Iterable[str] = ()) -> Ticket | None:
        """Close an open ticket with the support team's resolution text and queue the
        ``closed`` event for ``targets``, in one transaction; None if there is no such open
        ticket. The customer's mail (``CUSTOMER_MAIL`` among the targets) only goes out when
        the ticket has an e-mail address."""
        now = datetime.now(timezone.utc)
        with write_transaction(self.engine) as connection:
            result = connection.execute(
                tickets.update()
                .where(tickets.c.ticket_id == ticket_id, tickets.c.status == "open")
                .values(status="closed", closed_at=now.isoformat(), resolution=encrypt(resolution, RESOLUTION))
            )
            if result.rowcount != 1:
                return None
            ticket = self._ticket(
                connection.execute(sa.select(tickets).where(tickets.c.ticket_id == ticket_id)).first()
            )
            targets = [t for t in targets if t != CUSTOMER_MAIL or ticket.contact.get("email")]
            payload = ticket.closed_payload() | ({"to": ticket.contact["email"]} if CUSTOMER_MAIL in targets else {})
            self._queue(connection, ticket_id, "closed", payload, targets, now)
        return ticket

    def deliveries_for(self, ticket_id: str) -> list[Delivery]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(deliveries).where(deliveries.c.ticket_id == ticket_id).order_by(deliveries.c.key)
            ).all()
        return [self._delivery(row) for row in rows]

    def due_deliveries(self, now: datetime, limit: int = 20, target: str | None = None) -> list[Delivery]:
        with self.engine.connect() as connection:
            rows = connection.execute(_due(now, target).limit(limit)).all()
        return [self._delivery(row) for row in rows]

    def delivery_states(self, ticket_ids: Iterable[str]) -> dict[str, str]:
        """Per ticket, how its deliveries stand: "failed" if one failed for good, else
        "pending" if one waits, else "delivered"; tickets without deliveries are left out."""
        ids = list(ticket_ids)
        states: dict[str, set[str]] = {}
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(deliveries.c.ticket_id, deliveries.c.status)
                .where(deliveries.c.ticket_id.in_(ids))
                .group_by(deliveries.c.ticket_id, deliveries.c.status)
            )
            for ticket_id, status in rows:
                states.setdefault(ticket_id, set()).add(status)
        return {
            ticket_id: next(state for state in ("failed", "pending", "delivered") if state in found)
            for ticket_id, found in states.items()
        }

    def backlog(self) -> int:
        """Deliveries not sent yet (due now or waiting for their next attempt)."""
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.status == "pending")
            ).scalar_one()

    def claim_next(self, now: datetime, until: datetime, target: str | None = None) -> Delivery | None:
        """The next due row (of ``target``, or of any), taken for one attempt until ``until``
        (see ``claim``); None if nothing is due or every due row is taken."""
        if self.engine.dialect.name == "postgresql":
            # Rows another worker is claiming right now are skipped, not waited for.
            with self.engine.begin() as connection:
                row = connection.execute(_due(now, target).limit(1).with_for_update(skip_locked=True)).first()
                if row is None:
                    return None
                connection.execute(
                    deliveries.update().where(deliveries.c.key == row.key).values(next_attempt_at=until.isoformat())
                )
            return dataclasses.replace(self._delivery(row), next_attempt_at=until.isoformat())
        for delivery in self.due_deliveries(now, limit=CLAIM_CANDIDATES, target=target):
            claimed = self.claim(delivery, until)
            if claimed:
                return claimed
        return None

    def claim(self, delivery: Delivery, until: datetime) -> Delivery | None:
        """Take a due row for one attempt, until ``until`` (compare-and-swap): the row as
        claimed, None if another worker took it first (it moved ``next_attempt_at``). A
        worker that dies while sending leaves the row to be retried once the claim runs out."""
        with self.engine.begin() as connection:
            result = connection.execute(
                deliveries.update()
                .where(
                    deliveries.c.key == delivery.key,
                    deliveries.c.status == "pending",
                    deliveries.c.attempts == delivery.attempts,
                    deliveries.c.next_attempt_at == delivery.next_attempt_at,
                )
                .values(next_attempt_at=until.isoformat())
            )
        return dataclasses.replace(delivery, next_attempt_at=until.isoformat()) if result.rowcount == 1 else None

    def mark_delivered(self, key: str, attempts: int) -> None:
        # The receiver has the payload now: no second copy of transcript and contact is kept
        # (data minimisation; the ticket itself keeps them until its retention period ends).
        with self.engine.begin() as connection:
            connection.execute(
                deliveries.update()
                .where(deliveries.c.key == key)
                .values(
                    status="delivered",
                    attempts=attempts,
                    delivered_at=datetime.now(timezone.utc).isoformat(),
                    payload="{}",
                    last_error=None,  # delivered: an earlier attempt's error is history
                )
            )

    def mark_failed_attempt(
        self, claimed: Delivery, attempts: int, error: str, retry_at: datetime, give_up: bool = False
    ) -> bool:
        """Record a failed attempt of a claimed row; False (nothing changed) if the claim ran
        out meanwhile and another worker took the row over: its result counts, not this one."""
        with self.engine.begin() as connection:
            result = connection.execute(
                deliveries.update()
                .where(
                    deliveries.c.key == claimed.key,
                    deliveries.c.status == "pending",
                    deliveries.c.attempts == claimed.attempts,
                    deliveries.c.next_attempt_at == claimed.next_attempt_at,
                )
                .values(
                    status="failed" if give_up else "pending",
                    attempts=attempts,
                    last_error=error,
                    next_attempt_at=retry_at.isoformat(),
                )
            )
        return result.rowcount == 1

    @staticmethod
    def _delivery(row) -> Delivery:
        return Delivery(
            row.key,
            row.ticket_id,
            row.target,
            json.loads(decrypt(row.payload, PAYLOAD)),
            row.status,
            row.attempts,
            row.next_attempt_at,
            row.last_error,
            row.delivered_at,
        )

    @staticmethod
    def _ticket(row) -> Ticket:
        contact = decrypt(row.contact, CONTACT)
        return Ticket(
            row.ticket_id,
            row.sender_id,
            row.created_at,
            row.channel,
            decrypt(row.question, QUESTION),
            row.faq_guess,
            row.confidence,
            json.loads(decrypt(row.transcript, TRANSCRIPT)),
            row.status,
            json.loads(contact) if contact else {"id": row.sender_id},
            row.closed_at,
            decrypt(row.resolution, RESOLUTION),
        )
