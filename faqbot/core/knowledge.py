"""The FAQ knowledge: one entry per FAQ question, read from ``data/faq.yml``.

This is the single place that knows the file's format. The action server reads the
answers from here at run time (so correcting an answer needs no retraining) and the
importer (``faqbot.tools.importer``) writes it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ruamel.yaml import YAML

from faqbot.core.intents import intent_for
from faqbot.core.paths import FAQ_FILE


class KnowledgeError(Exception):
    """The FAQ knowledge file is missing, unreadable or malformed."""


@dataclass
class FaqEntry:
    id: str
    category: str
    question: str
    answer: str

    @property
    def intent(self) -> str:
        return intent_for(self.id)


def faq_file() -> Path:
    return Path(os.environ.get("FAQBOT_FAQ_FILE", FAQ_FILE))


def load(path: Path | None = None) -> dict[str, FaqEntry]:
    """All FAQ entries by id, in page order. Raises KnowledgeError on any problem."""
    path = Path(path or faq_file())
    try:
        content = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        entries = [
            FaqEntry(**{k: str(item[k]) for k in ("id", "category", "question", "answer")}) for item in content["faqs"]
        ]
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise KnowledgeError(f"FAQ-Wissen in {path} nicht lesbar: {error}") from error
    except Exception as error:  # YAML syntax errors come in several classes
        raise KnowledgeError(f"FAQ-Wissen in {path} nicht lesbar: {error}") from error
    return {entry.id: entry for entry in entries}


class CachedKnowledge:
    """Re-reads the knowledge file only when it changed on disk.

    The action server is long-running; answers corrected in ``data/faq.yml`` must show
    up without a restart, but reading YAML on every message would be wasteful.
    """

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._stamp: tuple | None = None
        self._entries: dict[str, FaqEntry] = {}

    def entries(self) -> dict[str, FaqEntry]:
        path = Path(self._path or faq_file())
        try:
            stat = path.stat()
        except OSError as error:
            raise KnowledgeError(f"FAQ-Wissen {path} fehlt: {error}") from error
        stamp = (str(path), stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._entries = load(path)
            self._stamp = stamp
        return self._entries

    def get(self, faq_id: str) -> FaqEntry:
        entries = self.entries()
        if faq_id not in entries:
            raise KnowledgeError(f"Unbekannte FAQ-ID: {faq_id!r}")
        return entries[faq_id]


def dump(entries: list[FaqEntry], path: Path, header: str) -> None:
    """Write the knowledge file; answers as literal blocks so they stay verbatim and diffable."""
    from ruamel.yaml.scalarstring import LiteralScalarString

    yaml = YAML()
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    items = []
    for entry in entries:
        item = asdict(entry)
        item["answer"] = LiteralScalarString(entry.answer)
        items.append(item)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        handle.write(header)
        yaml.dump({"faqs": items}, handle)
