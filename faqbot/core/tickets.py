"""Escalations to the support team: tickets with the conversation transcript.

Tickets are stored with SQLAlchemy, in SQLite by default (``var/tickets.db``); set
``FAQBOT_TICKET_DB_URL`` to any SQLAlchemy URL (e.g. PostgreSQL) to store them elsewhere.
Question, transcript and contact of a ticket and the payload of an outbox row are stored
encrypted (``faqbot.core.encryption``); a SQLite file is readable only by its owner.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from faqbot.core.encryption import decrypt, encrypt, private_file
from faqbot.core.paths import VAR_DIR

DEFAULT_DB = VAR_DIR / "tickets.db"
# The encrypted columns (the names are the associated data of their values).
QUESTION, TRANSCRIPT, CONTACT, PAYLOAD = (
    "tickets.question",
    "tickets.transcript",
    "tickets.contact",
    "deliveries.payload",
)
ENCRYPTED = {
    "tickets": {"question": QUESTION, "transcript": TRANSCRIPT, "contact": CONTACT},
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
    is_new: bool = False

    def payload(self) -> dict[str, Any]:
        """The JSON the support team receives for a new ticket (README, "Weitergabe")."""
        return {
            "event": "created",
            "ticket_id": self.ticket_id,
            "created": self.created_at,
            "channel": self.channel,
            "customer": self.contact,
            "question": self.question,
            "faq_guess": self.faq_guess,
            "confidence": self.confidence,
            "transcript": self.transcript,
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


class TicketStore:
    def __init__(self, url: str | None = None) -> None:
        self.engine = sa.create_engine(url or database_url(), future=True)
        if self.engine.dialect.name == "sqlite" and self.engine.url.database:
            private_file(self.engine.url.database)
        metadata.create_all(self.engine)
        self._add_missing_columns()
        self._lock = threading.Lock()  # one ticket per conversation, even for double clicks

    def _add_missing_columns(self) -> None:
        """Stores created by an earlier version lack the contact column."""
        if "contact" not in {column["name"] for column in sa.inspect(self.engine).get_columns("tickets")}:
            with self.engine.begin() as connection:
                connection.execute(sa.text("ALTER TABLE tickets ADD COLUMN contact TEXT"))

    def open_ticket_for(self, sender_id: str) -> Ticket | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(tickets)
                .where(tickets.c.sender_id == sender_id, tickets.c.status == "open")
                .order_by(tickets.c.number.desc())
            ).first()
        return self._ticket(row) if row else None

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
        """
        with self._lock:
            existing = self.open_ticket_for(sender_id)
            if existing:
                return existing
            now = datetime.now(timezone.utc)
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
        ticket.is_new = True
        return ticket

    def append_message(self, ticket_id: str, text: str, targets: Iterable[str] = ()) -> int:
        """Add a message the customer wrote after the handoff to the open ticket's
        transcript and queue it for delivery, in one transaction. Returns its position
        in the transcript (part of the delivery key, so it is delivered once)."""
        now = datetime.now(timezone.utc)
        line = {"from": "kunde", "text": text, "time": now.isoformat()}
        with self._lock, self.engine.begin() as connection:
            row = connection.execute(
                sa.select(tickets).where(tickets.c.ticket_id == ticket_id, tickets.c.status == "open")
            ).first()
            if row is None:
                raise LookupError(f"no open ticket {ticket_id}")
            ticket = self._ticket(row)
            ticket.transcript.append(line)
            number = len(ticket.transcript)
            connection.execute(
                tickets.update()
                .where(tickets.c.number == row.number)
                .values(transcript=encrypt(json.dumps(ticket.transcript, ensure_ascii=False), TRANSCRIPT))
            )
            self._queue(connection, ticket_id, f"message-{number}", ticket.message_payload(line, number), targets, now)
        return number

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

    def close(self, ticket_id: str) -> bool:
        """Close an open ticket; False if there is no such open ticket."""
        with self.engine.begin() as connection:
            result = connection.execute(
                tickets.update()
                .where(tickets.c.ticket_id == ticket_id, tickets.c.status == "open")
                .values(status="closed")
            )
        return result.rowcount == 1

    def deliveries_for(self, ticket_id: str) -> list[Delivery]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(deliveries).where(deliveries.c.ticket_id == ticket_id).order_by(deliveries.c.key)
            ).all()
        return [self._delivery(row) for row in rows]

    def due_deliveries(self, now: datetime, limit: int = 20) -> list[Delivery]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(deliveries)
                .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now.isoformat())
                .order_by(deliveries.c.next_attempt_at)
                .limit(limit)
            ).all()
        return [self._delivery(row) for row in rows]

    def claim(self, delivery: Delivery, until: datetime) -> bool:
        """Take a due row for one attempt, until ``until``: False if another worker took it
        first (it moved ``next_attempt_at``). A worker that dies while sending leaves the
        row to be retried once the claim runs out."""
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
        return result.rowcount == 1

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
                )
            )

    def mark_failed_attempt(
        self, key: str, attempts: int, error: str, retry_at: datetime, give_up: bool = False
    ) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                deliveries.update()
                .where(deliveries.c.key == key)
                .values(
                    status="failed" if give_up else "pending",
                    attempts=attempts,
                    last_error=error,
                    next_attempt_at=retry_at.isoformat(),
                )
            )

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
        )
