"""Which FAQ questions the bot offers as „Meinten Sie …?“ buttons when it is unsure.

One rule for the action that shows the buttons and for the evaluation that scores them.
"""

from __future__ import annotations

from typing import Any

from faqbot.core.intents import faq_id_for

# Show an FAQ question as a button only if the NLU gave it at least this confidence; below
# it for the best guess, the bot offers the support team instead. Chosen on the held-out
# set (`python -m faqbot.tools.evaluate --clarify-min X`, README).
CLARIFY_MIN_CONFIDENCE = 0.10
MAX_CLARIFY_OPTIONS = 3


def faq_ranking(parse: dict[str, Any]) -> list[dict[str, Any]]:
    """The FAQ intents the NLU considered, best first (without nlu_fallback and others)."""
    return [item for item in parse.get("intent_ranking") or [] if faq_id_for(item.get("name"))]


def clarify_candidates(parse: dict[str, Any], min_confidence: float = CLARIFY_MIN_CONFIDENCE) -> list[dict[str, Any]]:
    """The FAQ intents worth a "Meinten Sie …?" button for this parsed message."""
    return [item for item in faq_ranking(parse) if item.get("confidence", 0) >= min_confidence][:MAX_CLARIFY_OPTIONS]
