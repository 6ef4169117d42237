"""Which FAQ questions the bot offers as „Meinten Sie …?“ buttons when it is unsure.

One rule for the action that shows the buttons and for the evaluation that scores them.
"""

from __future__ import annotations

from typing import Any

from faqbot.core.intents import OUT_OF_SCOPE, faq_id_for

# Show an FAQ question as a button only if the NLU gave it at least this confidence; below
# it for the best guess, the bot offers the support team instead. Chosen on the held-out
# set (`python -m faqbot.tools.evaluate --clarify-min X`, README).
CLARIFY_MIN_CONFIDENCE = 0.10
MAX_CLARIFY_OPTIONS = 3
# „Not in the FAQ“ (out_of_scope) still gets the buttons when an FAQ question came at least
# this close: a question worded far from every phrasing reaches its answer with one click,
# and a true near miss costs one click („Keine davon“) before the offer of the support team.
# Chosen by cross-validation of the training data (README, "Quality and speed").
OUT_OF_SCOPE_CLARIFY_MIN = 0.30


def faq_ranking(parse: dict[str, Any]) -> list[dict[str, Any]]:
    """The FAQ intents the NLU considered, best first (without nlu_fallback and others)."""
    return [item for item in parse.get("intent_ranking") or [] if faq_id_for(item.get("name"))]


def clarify_candidates(
    parse: dict[str, Any],
    min_confidence: float = CLARIFY_MIN_CONFIDENCE,
    out_of_scope_min: float = OUT_OF_SCOPE_CLARIFY_MIN,
) -> list[dict[str, Any]]:
    """The FAQ intents worth a "Meinten Sie …?" button for this parsed message (unsure or
    not in the FAQ); none means: offer the support team."""
    candidates = [item for item in faq_ranking(parse) if item.get("confidence", 0) >= min_confidence]
    if (parse.get("intent") or {}).get("name") == OUT_OF_SCOPE:
        if not candidates or candidates[0]["confidence"] < out_of_scope_min:
            return []
    return candidates[:MAX_CLARIFY_OPTIONS]
