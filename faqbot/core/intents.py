"""Names of intents: the FAQ intents (``faq_<id>``) and the general ones."""

from __future__ import annotations

INTENT_PREFIX = "faq_"
OUT_OF_SCOPE = "out_of_scope"
NLU_FALLBACK = "nlu_fallback"  # Rasa's FallbackClassifier: the NLU is unsure
# The general intents (data/nlu/general.yml), with what a trainer reads for them.
GENERAL_INTENTS = {
    "greet": "Begrüßung",
    "goodbye": "Verabschiedung",
    "thank": "Dank",
    "affirm": "Zustimmung („ja“)",
    "deny": "Ablehnung („nein“)",
    "bot_challenge": "Frage, ob ein Bot antwortet",
    "human_handoff": "Wunsch nach einem Mitarbeiter",
    "back_to_bot": "Zurück zum Bot",
    "request_transcript": "Gesprächsverlauf per E-Mail",
    "ticket_status": "Frage nach dem Stand eines Tickets",
    "out_of_scope": "Nicht in der FAQ",
}
# Intents whose message is a reaction or small talk, not the customer's question (used by
# the escalation and by the trainers' review queue).
NOT_A_QUESTION = frozenset(GENERAL_INTENTS) - {OUT_OF_SCOPE}


def classifier_guess(ranking: list[dict]) -> dict:
    """The classifier's best guess in an intent ranking ({} without one): nlu_fallback only
    says "unsure", the classifier's own guess comes after it."""
    return next((item for item in ranking if item["name"] != NLU_FALLBACK), {})


def intent_for(faq_id: str) -> str:
    return INTENT_PREFIX + faq_id


def faq_id_for(intent: str | None) -> str | None:
    """The FAQ id behind an intent name, or None for intents that are not FAQ questions."""
    if intent and intent.startswith(INTENT_PREFIX):
        return intent[len(INTENT_PREFIX) :]
    return None
