"""A new FAQ question from the trainers: `faqbot-trainer add-faq` and the inbox's „FAQ aus
diesen Nachrichten anlegen“.

It writes the answer (``data/faq.yml``), the intent with the question and the phrasings,
the rule and the domain entry (the importer owns those file formats) and notes each
phrasing in the trainers' journal, so `list`, `undo` and the report show them. The bot
knows the question after the next training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from faqbot.core import trainer_journal
from faqbot.core.knowledge import FaqEntry, load
from faqbot.core.phrasings import PhrasingRefused, add_phrasing, check, masking_notice, normalise
from faqbot.tools import importer

# Fewer phrasings than this and the new question is hardly recognised at all.
MIN_PHRASINGS = 3
# tests/test_data.py: every FAQ intent needs its question plus at least 12 phrasings.
RECOMMENDED_PHRASINGS = 12


class NewFaqRefused(Exception):
    """Not created; the message says why, in German."""


@dataclass
class NewFaq:
    entry: FaqEntry
    phrasings: list[str]  # as written to the training data (masked)
    notices: list[str] = field(default_factory=list)  # what masking changed

    def messages(self) -> list[str]:
        """What the trainer reads afterwards (both ways of creating one)."""
        lines = [
            f"Neue FAQ {self.entry.id} angelegt: Antwort, Intent {self.entry.intent} mit der Frage und "
            f"{len(self.phrasings)} Formulierungen, Regel und Domain-Eintrag.",
            *self.notices,
        ]
        if len(self.phrasings) < RECOMMENDED_PHRASINGS:
            lines.append(
                f"Hinweis: Die Datenprüfung (tests/test_data.py) verlangt mindestens {RECOMMENDED_PHRASINGS} "
                "Formulierungen je FAQ; ordnen Sie ihr weitere Kundennachrichten zu oder ergänzen Sie "
                f'welche mit `add-phrasing {self.entry.id} "…"`.'
            )
        lines.append(
            "Hinweis: Die Frage steht noch nicht auf der FAQ-Seite (data/faq_seite.txt) und hat keine "
            "Testbeispiele in tests/nlu_heldout.yml; beides ergänzt das Entwicklungsteam, sonst schlagen "
            "die Datentests fehl."
        )
        return lines


def create(project: Path, category: str, question: str, answer: str, texts: list[str], source: str) -> NewFaq:
    """Check everything first, then write: a refused phrasing leaves the data as they were."""
    category, question, answer = category.strip(), question.strip(), answer.strip()
    missing = [name for name, value in (("Kategorie", category), ("Frage", question), ("Antwort", answer)) if not value]
    if missing:
        raise NewFaqRefused(f"Bitte geben Sie {' und '.join(missing)} an.")
    faqs = load(project / "data" / "faq.yml")
    entry = FaqEntry(importer.slugify(question), category, question, answer)
    if entry.id in faqs or any(normalise(old.question) == normalise(question) for old in faqs.values()):
        raise NewFaqRefused(f"Diese Frage gibt es schon ({entry.id}). Ordnen Sie die Nachrichten ihr zu.")
    new = NewFaq(entry, [])
    for text in texts:
        try:
            phrasing = check(entry.intent, text, project)  # masked
        except PhrasingRefused as refusal:
            raise NewFaqRefused(f"Nicht angelegt: „{text}“: {refusal}") from refusal
        if normalise(phrasing) not in {normalise(p) for p in [question, *new.phrasings]}:
            new.phrasings.append(phrasing)
            new.notices += [notice] if (notice := masking_notice(text, phrasing)) else []
    if len(new.phrasings) < MIN_PHRASINGS:
        raise NewFaqRefused(
            f"Bitte mindestens {MIN_PHRASINGS} verschiedene Formulierungen angeben (empfohlen: "
            f"{RECOMMENDED_PHRASINGS}); die Frage selbst zählt nicht mit."
        )
    entries = [*faqs.values(), entry]
    importer.dump(entries, project / "data" / "faq.yml", importer.KNOWLEDGE_HEADER)
    importer.update_nlu(project / "data" / "nlu" / "faq.yml", entries, [])
    importer.write_rules(project / "data" / "rules" / "faq.yml", entries)
    importer.update_domain(project / "domain.yml", entries, [])
    for phrasing in new.phrasings:
        add_phrasing(entry.intent, phrasing, project)
        trainer_journal.record(project, "added", entry.intent, phrasing, source)
    return new
