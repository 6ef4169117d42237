"""The review queue's storage: customer messages the bot did not handle well, for the trainers.

Filled by the Rasa server's event broker (``faqbot.server.review_broker``), read by the
trainer CLI (``faqbot-trainer review``). Texts are masked (``faqbot.core.masking``) before
they are stored, senders hashed with a key (``sender_hash``).

When a trainer adds a message as a phrasing, the row keeps the phrasing exactly as written
to ``data/nlu`` (``added_phrasing``) and its intent (``assigned_to``), so an erasure
request can remove it from the training data again. A queue written before these columns
existed gets them when it is first opened, and its texts are masked again with the
current rules (older versions masked e-mail, phone and IBAN only).

The texts and the added phrasings are stored encrypted (``faqbot.core.encryption``), the
file readable only by its owner.
"""

from __future__ import annotations

import functools
import hmac
import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from faqbot.core import shared_secrets
from faqbot.core.encryption import decrypt, encrypt, private_file
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
HASH_SECRET = "FAQBOT_HASH_SECRET"
# The encrypted columns (the names are the associated data of their values).
TEXT, ADDED_PHRASING = "review.text", "review.added_phrasing"
ENCRYPTED = {"text": TEXT, "added_phrasing": ADDED_PHRASING}

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
    assigned_to TEXT,  -- the intent the trainer assigned the message to (also out_of_scope)
    added_phrasing TEXT  -- the phrasing written to data/nlu from this message, exactly
);
CREATE INDEX IF NOT EXISTS review_status ON review (status);
"""


def db_path(configured: str | None = None) -> Path:
    """FAQBOT_REVIEW_DB, else the configured file (relative to the project), else var/review.db."""
    path = Path(os.environ.get("FAQBOT_REVIEW_DB") or configured or DEFAULT_DB)
    return path if path.is_absolute() else PROJECT_DIR / path


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


def _stored_text(text: str) -> str:
    # Mask before cutting, so that no half e-mail address escapes the mask; control
    # characters would garble the trainer's terminal.
    return one_line(mask(text))[:MAX_TEXT]


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
        private_file(self.path)
        self._connection = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        self._connection.row_factory = sqlite3.Row
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")  # WAL: safe, and no fsync per row
        try:
            self._connection.executescript(SCHEMA)
            self._upgrade()
        except BaseException:
            self._connection.close()
            raise

    def _upgrade(self) -> None:
        """Add the columns of newer versions to an older queue, once; re-mask its texts."""
        if self._has_current_columns():
            return
        self._connection.execute("BEGIN IMMEDIATE")  # another process may be upgrading it too
        try:
            if not self._has_current_columns():
                self._connection.execute("ALTER TABLE review ADD COLUMN added_phrasing TEXT")
                rows = self._connection.execute("SELECT id, text FROM review").fetchall()
                for row in rows:
                    stored = decrypt(row["text"], TEXT)
                    text = _stored_text(stored)
                    if text != stored:
                        self._connection.execute(
                            "UPDATE review SET text = ? WHERE id = ?", (encrypt(text, TEXT), row["id"])
                        )
            self._connection.execute("COMMIT")
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise

    def _has_current_columns(self) -> bool:
        return "added_phrasing" in {row["name"] for row in self._connection.execute("PRAGMA table_info(review)")}

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
        text = _stored_text(text)
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
                encrypt(text, TEXT),
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

    def set_added_phrasing(self, entry_id: int, intent: str, phrasing: str) -> None:
        """The phrasing written to the training data from this message, and its intent."""
        self._connection.execute(
            "UPDATE review SET added_phrasing = ?, assigned_to = ? WHERE id = ?",
            (encrypt(phrasing, ADDED_PHRASING), intent, entry_id),
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
            Entry(**{**decrypted_row(row), "ranking": json.loads(row["ranking"])})
            for row in self._connection.execute(query, params)
        ]


def decrypted_row(row: sqlite3.Row) -> dict[str, Any]:
    """A row of the queue with its texts decrypted."""
    entry = dict(row)
    for column, field in ENCRYPTED.items():
        if column in entry:
            entry[column] = decrypt(entry[column], field)
    return entry
