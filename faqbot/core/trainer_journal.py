"""What the trainers changed in the training data: phrasings added and removed, in order.

``faqbot-trainer list`` shows the changes since the last training, ``undo`` takes an added
phrasing out again, and the report starts with them („Ihre Änderungen“). One JSON line per
change in ``var/trainer/aenderungen.jsonl`` of the project. The phrasing itself is not
kept, only a hash of it (an erased phrasing leaves no text here); its text is looked up in
the training data while it is there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from faqbot.core.models import newest_model
from faqbot.core.phrasings import nlu_files, read_examples


@dataclass(frozen=True)
class Change:
    time: str  # ISO, UTC
    action: str  # "added" or "removed"
    intent: str
    phrasing_hash: str
    source: str  # "add-phrasing", "review #12", "undo"
    review_entry: int | None = None  # the review queue's entry it came from


def journal_file(project: Path) -> Path:
    return project / "var" / "trainer" / "aenderungen.jsonl"


def phrasing_hash(intent: str, phrasing: str) -> str:
    return hashlib.sha256(f"{intent}\n{phrasing}".encode()).hexdigest()[:24]


def record(
    project: Path, action: str, intent: str, phrasing: str, source: str, review_entry: int | None = None
) -> None:
    path = journal_file(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    change = Change(
        datetime.now(timezone.utc).isoformat(timespec="seconds"),
        action,
        intent,
        phrasing_hash(intent, phrasing),
        source,
        review_entry,
    )
    with path.open("a", encoding="utf-8") as journal:
        journal.write(json.dumps(asdict(change), ensure_ascii=False) + "\n")


def changes(project: Path, since: datetime | None = None) -> list[Change]:
    path = journal_file(project)
    if not path.exists():
        return []
    found = [Change(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [change for change in found if since is None or datetime.fromisoformat(change.time) > since]


@dataclass(frozen=True)
class DescribedChange:
    """A change with the phrasing's text, while it is in the training data (else None)."""

    change: Change
    intent: str
    phrasing: str | None

    @property
    def undoable(self) -> bool:
        return self.change.action == "added" and self.phrasing is not None


def described_changes(project: Path, since: datetime | None = None) -> list[DescribedChange]:
    """The changes since ``since`` (all without it), each with the text it has now."""
    present = present_phrasings(project)
    described = []
    for change in changes(project, since):
        intent, phrasing = present.get(change.phrasing_hash, (change.intent, None))
        described.append(DescribedChange(change, intent, phrasing))
    return described


def present_phrasings(project: Path) -> dict[str, tuple[str, str]]:
    """Hash -> (intent, phrasing) of every example in the training data now."""
    return {
        phrasing_hash(intent, phrasing): (intent, phrasing)
        for path in nlu_files(project)
        for intent, examples in read_examples(path).items()
        for phrasing in examples
    }


def last_training(project: Path) -> datetime | None:
    """When the newest model in models/ was trained (its file's time)."""
    model = newest_model(project / "models")
    return datetime.fromtimestamp(model.stat().st_mtime, timezone.utc) if model else None
