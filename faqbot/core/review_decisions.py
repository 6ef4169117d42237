"""What a trainer decides about a message of the review queue, for the command line and the
web inbox alike: assign it to an FAQ (or "not in the FAQ"), and take an added phrasing back.
Messages for the trainer are German, in the Sie-form."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from faqbot.core import trainer_journal
from faqbot.core.intents import GENERAL_INTENTS, OUT_OF_SCOPE, faq_id_for, intent_for
from faqbot.core.knowledge import FaqEntry
from faqbot.core.phrasings import (
    AlreadyPresent,
    PhrasingRefused,
    add_phrasing_as_written,
    masking_notice,
    remove_phrasing,
    vagueness_notice,
)

# What kind of miss a queued message is, for the trainer.
KIND_NAMES = {
    "clarification": "Rückfrage „Meinten Sie …?“",
    "fallback": "nicht verstanden",
    "out_of_scope": "nicht in den FAQ",
    "escalation": "an den Support weitergegeben",
    "low_confidence": "beantwortet, aber unsicher",
    "unhelpful": "Antwort als nicht hilfreich bewertet",
    "contradicted": "sicher beantwortet, aber der Kunde widersprach",
    "small_talk": "als Smalltalk verstanden, klingt aber nach einer Frage",
    "sample": "Stichprobe: sicher beantwortet – stimmt die Antwort?",
}


def outcome_text(outcome: str | None, faqs: dict[str, FaqEntry]) -> str:
    """How the conversation went on after the message, for the trainer."""
    if not outcome:
        return "keine weitere Reaktion"
    if outcome.startswith("faq:"):
        entry = faqs.get(outcome[4:])
        return f"wählte die Schaltfläche „{entry.question if entry else outcome[4:]}“"
    if outcome.startswith("unhelpful:"):
        entry = faqs.get(outcome[10:])
        return f"fand die Antwort auf „{entry.question if entry else outcome[10:]}“ nicht hilfreich"
    return {
        "none_of_these": "wählte „Keine davon“",
        "declined": "lehnte die Weitergabe ab",
        "escalated": "wurde an den Support weitergegeben",
        "thanks": "bedankte sich",
        "said_no": "antwortete „nein“ auf die Antwort",
        "rephrased": "fragte danach noch einmal anders",
        "asked_for_person": "wollte danach einen Mitarbeiter sprechen",
    }.get(outcome, outcome)


def answer_text(entry, faqs: dict[str, FaqEntry]) -> str:
    """What the bot answered to the message, for the trainer."""
    faq = faqs.get(faq_id_for(entry.intent or "") or "")
    if entry.kind == "clarification":
        return "fragte „Meinten Sie …?“ mit Vorschlägen"
    if entry.kind in ("fallback", "out_of_scope"):
        return "fand keine passende FAQ-Frage und bot das Support-Team an"
    if faq is not None:
        return f"antwortete mit der FAQ „{faq.question}“"
    if entry.intent in GENERAL_INTENTS:
        return f"antwortete wie auf: {GENERAL_INTENTS[entry.intent]}"
    return "gab an das Support-Team weiter" if entry.kind == "escalation" else "–"


@dataclass
class Decision:
    settled: bool  # the message is done (assigned or not in the FAQ); else it stays open
    intent: str | None = None
    messages: list[str] = field(default_factory=list)


def assign(store, entry, faq_id: str | None, project: Path) -> Decision:
    """The message as a phrasing of the FAQ (``None``: not in the FAQ), recorded in the queue
    and the trainers' journal; refused with the reason, the message then stays open."""
    intent = intent_for(faq_id) if faq_id else OUT_OF_SCOPE
    messages = []
    try:
        added = add_phrasing_as_written(intent, entry.text, project)
    except AlreadyPresent as refusal:
        messages.append(f"{refusal} Als erledigt markiert.")
    except PhrasingRefused as refusal:
        return Decision(False, intent, [f"Nicht übernommen: {refusal} Die Nachricht bleibt offen."])
    else:
        # Which phrasing came from this message, so that an erasure request can remove it
        # again: a phrasing that cannot be recorded does not stay in the training data.
        try:
            store.set_added_phrasing(entry.id, added.intent, added.phrasing)
        except SQLAlchemyError as error:
            remove_phrasing(added.intent, added.phrasing, project)
            return Decision(
                False,
                intent,
                [
                    "Nicht übernommen: Die Review-Warteschlange ist gerade nicht beschreibbar "
                    f"({getattr(error, 'orig', error)}). Bitte versuchen Sie es gleich noch einmal."
                ],
            )
        trainer_journal.record(project, "added", added.intent, added.phrasing, f"review #{entry.id}", entry.id)
        messages.append(f"Hinzugefügt zu {intent}.")
        if added.masked:
            messages.append(masking_notice(entry.text, added.phrasing))
        if intent != OUT_OF_SCOPE and (notice := vagueness_notice(added.phrasing, project)):
            messages.append(notice)
    store.set_status(entry.id, "out_of_scope" if intent == OUT_OF_SCOPE else "assigned", intent)
    return Decision(True, intent, messages)


class NothingToUndo(Exception):
    """Nothing (more) to take back; the message says why, in German."""


def undo(project: Path, number: int | None, reopen) -> list[str]:
    """Take an added phrasing out again: the last one still there, or number ``number`` of the
    changes since the last training (``faqbot-trainer list``). ``reopen(entry_id)`` opens the
    review message it came from again. The trainer's messages."""
    since = trainer_journal.last_training(project) if number else None
    changes = trainer_journal.described_changes(project, since)
    if number is not None:
        if not 1 <= number <= len(changes):
            raise NothingToUndo(f"Eine Änderung Nummer {number} gibt es nicht (siehe `faqbot-trainer list`).")
        described = changes[number - 1]
    else:
        described = next((c for c in reversed(changes) if c.undoable), None)
        if described is None:
            raise NothingToUndo("Es gibt keine hinzugefügte Formulierung, die noch zurückzunehmen wäre.")
    if not described.undoable:
        raise NothingToUndo("Diese Formulierung ist nicht (mehr) in den Trainingsdaten: nichts zurückzunehmen.")
    change, intent, phrasing = described.change, described.intent, described.phrasing
    try:
        remove_phrasing(intent, phrasing, project)
    except PhrasingRefused as refusal:
        raise NothingToUndo(f"Nicht entfernt: {refusal}") from refusal
    trainer_journal.record(project, "removed", intent, phrasing, "undo", change.review_entry)
    messages = [f"Entfernt aus {intent}: „{phrasing}“. Danach: `faqbot-trainer train`."]
    if change.review_entry is not None:
        reopen(change.review_entry)
        messages.append(f"Die Nachricht #{change.review_entry} ist wieder offen in `faqbot-trainer review`.")
    return messages
