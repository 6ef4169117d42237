"""Escalations to the support team: tickets with the conversation transcript.

Tickets are stored with SQLAlchemy, in SQLite by default (``var/tickets.db``); set
``FAQBOT_TICKET_DB_URL`` to any SQLAlchemy URL (e.g. PostgreSQL) to store them elsewhere.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import sqlalchemy as sa

from actions.knowledge import PROJECT_DIR

DEFAULT_DB = PROJECT_DIR / "var" / "tickets.db"

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
)


@dataclass
class Ticket:
    ticket_id: str
    sender_id: str
    created_at: str
    channel: Optional[str]
    question: Optional[str]
    faq_guess: Optional[str]
    confidence: Optional[float]
    transcript: List[Dict[str, Any]]
    status: str
    is_new: bool = False


def database_url() -> str:
    url = os.environ.get("FAQBOT_TICKET_DB_URL")
    if url:
        return url
    path = Path(os.environ.get("FAQBOT_TICKET_DB", DEFAULT_DB))
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def transcript_from_events(events: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The customer's and the bot's messages, in order, from Rasa tracker events."""
    lines = []
    for event in events:
        if event.get("event") in ("user", "bot") and (event.get("text") or "").strip():
            lines.append({
                "from": "kunde" if event["event"] == "user" else "bot",
                "text": event["text"],
                "time": datetime.fromtimestamp(event.get("timestamp") or 0, timezone.utc).isoformat(),
            })
    return lines


class TicketStore:
    def __init__(self, url: Optional[str] = None) -> None:
        self.engine = sa.create_engine(url or database_url(), future=True)
        metadata.create_all(self.engine)
        self._lock = threading.Lock()  # one ticket per conversation, even for double clicks

    def open_ticket_for(self, sender_id: str) -> Optional[Ticket]:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(tickets).where(tickets.c.sender_id == sender_id, tickets.c.status == "open")
                .order_by(tickets.c.number.desc())).first()
        return self._ticket(row) if row else None

    def get(self, ticket_id: str) -> Optional[Ticket]:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(tickets).where(tickets.c.ticket_id == ticket_id)).first()
        return self._ticket(row) if row else None

    def create(self, sender_id: str, channel: Optional[str], question: Optional[str],
               faq_guess: Optional[str], confidence: Optional[float],
               transcript: List[Dict[str, Any]]) -> Ticket:
        """A new ticket, or the conversation's open ticket if there is one already."""
        with self._lock:
            existing = self.open_ticket_for(sender_id)
            if existing:
                return existing
            now = datetime.now(timezone.utc)
            with self.engine.begin() as connection:
                number = connection.execute(tickets.insert().values(
                    sender_id=sender_id, created_at=now.isoformat(), channel=channel,
                    question=question, faq_guess=faq_guess, confidence=confidence,
                    transcript=json.dumps(transcript, ensure_ascii=False), status="open",
                )).inserted_primary_key[0]
                ticket_id = f"T-{now:%Y%m%d}-{number:05d}"
                connection.execute(tickets.update().where(tickets.c.number == number)
                                   .values(ticket_id=ticket_id))
        ticket = self.get(ticket_id)
        ticket.is_new = True
        return ticket

    @staticmethod
    def _ticket(row) -> Ticket:
        return Ticket(row.ticket_id, row.sender_id, row.created_at, row.channel, row.question,
                      row.faq_guess, row.confidence, json.loads(row.transcript), row.status)
