"""The review queue's storage: customer messages the bot did not handle well, for the trainers.

Filled by the Rasa server's event broker (``faqbot.server.review_broker``), read by the
trainer CLI (``faqbot-trainer review``). Texts are masked (``faqbot.core.masking``) before
they are stored, senders hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from faqbot.core.intents import faq_id_for
from faqbot.core.masking import mask
from faqbot.core.paths import PROJECT_DIR, VAR_DIR
from faqbot.core.text import one_line

DEFAULT_DB = VAR_DIR / "review.db"
KINDS = ("clarification", "fallback", "out_of_scope", "escalation", "low_confidence")
STATUSES = ("open", "assigned", "skipped", "new_question", "out_of_scope")
# Outcomes: "faq:<id>" (clarification button picked), "none_of_these", "declined",
# "escalated", "thanks"; NULL = the customer left or did nothing of these.
ESCALATED = "escalated"
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


def db_path(configured: str | None = None) -> Path:
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
    intent: str | None
    confidence: float | None
    ranking: list[dict[str, Any]]
    kind: str
    outcome: str | None
    status: str
    assigned_to: str | None

    def _best_intent(self) -> dict[str, Any]:
        # nlu_fallback only says "unsure"; the classifier's own guess comes after it.
        return next((item for item in self.ranking if item["name"] != "nlu_fallback"), {})

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


class ReviewStore:
    """The queue in SQLite (WAL: the bot writes while a trainer reads)."""

    def __init__(self, path: Path | None = None, timeout: float = 5.0) -> None:
        """``timeout``: seconds a write waits for another connection's lock (sqlite3's default)."""
        self.path = Path(path or db_path())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        self._connection.row_factory = sqlite3.Row
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")  # WAL: safe, and no fsync per row
        self._connection.executescript(SCHEMA)

    def close(self) -> None:
        self._connection.close()

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
        # Mask before cutting, so that no half e-mail address escapes the mask; control
        # characters would garble the trainer's terminal.
        text = one_line(mask(text))[:MAX_TEXT]
        if kind not in KINDS:
            raise ValueError(f"Unbekannte Art: {kind}")
        top3 = [
            {"name": item["name"], "confidence": round(float(item.get("confidence") or 0), 4)}
            for item in (ranking or [])[:3]
        ]
        cursor = self._connection.execute(
            "INSERT INTO review (created, sender, text, intent, confidence, ranking, kind, outcome)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
                sender,
                text,
                intent,
                None if confidence is None else round(float(confidence), 4),
                json.dumps(top3),
                kind,
                outcome,
            ),
        )
        return cursor.lastrowid

    def set_outcome(self, entry_id: int, outcome: str) -> None:
        """The first reaction counts; an escalation later in the conversation overrides it."""
        self._connection.execute(
            "UPDATE review SET outcome = ? WHERE id = ? AND (outcome IS NULL OR ? = ?)",
            (outcome, entry_id, outcome, ESCALATED),
        )

    def set_status(self, entry_id: int, status: str, assigned_to: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"Unbekannter Status: {status}")
        self._connection.execute(
            "UPDATE review SET status = ?, assigned_to = ? WHERE id = ?", (status, assigned_to, entry_id)
        )

    def entries(
        self,
        status: str | None = "open",
        kind: str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
    ) -> list[Entry]:
        query, params = "SELECT * FROM review WHERE 1 = 1", []
        if status:
            query, params = query + " AND status = ?", params + [status]
        if kind:
            query, params = query + " AND kind = ?", params + [kind]
        if since:  # ISO timestamps in UTC compare correctly as text
            query, params = (
                query + " AND created >= ?",
                params + [since.astimezone(timezone.utc).isoformat(timespec="seconds")],
            )
        query += " ORDER BY id"
        if limit:
            query, params = query + " LIMIT ?", params + [limit]
        return [
            Entry(**{**dict(row), "ranking": json.loads(row["ranking"])})
            for row in self._connection.execute(query, params)
        ]
