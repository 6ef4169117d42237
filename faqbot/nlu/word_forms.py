"""German word forms: lowercase lemmas and compound parts.

The offline stand-in of de_core_news_sm only has a lookup lemmatizer that is
case-sensitive („Rechnungen“ → „Rechnung“, „rechnungen“ → „rechnungen“), and no model
splits compounds, while customers write in lowercase and with their own compounds
(„Rechnungsadresse“, „Preisnachlass“). ``word_form`` makes these the same word:
simplemma's German dictionary (it ships inside the package; no download), lowercased,
plus the parts of a compound that compound-split divides with confidence
(„rechnungsadresse rechnung adresse“).

Used for the word features of faqbot.nlu.faq_ranker (measured: +2 points answered at
once there). As lemmas for DIET's word features they changed nothing measurable, so
DIET keeps spaCy's (README, "Quality and speed").
"""

from __future__ import annotations

import functools

# compound-split's score: above this the split is reliable (checked on the FAQ's nouns:
# „Rechnungs|adresse“ 1.03, „Kosten|träger“ 0.96; nonsense like „Güns|tiger“ is negative).
MIN_SPLIT_SCORE = 0.7
MIN_COMPOUND_LENGTH = 8


@functools.lru_cache(maxsize=50_000)
def word_form(word: str, split_compounds: bool = True) -> str:
    """What to count for ``word``: its lowercase lemma, plus compound parts if any."""
    import simplemma
    from compound_split import char_split

    lemma = simplemma.lemmatize(word, lang="de").lower()
    if split_compounds and len(word) >= MIN_COMPOUND_LENGTH and word.isalpha():
        score, head, tail = char_split.split_compound(word)[0]
        if score >= MIN_SPLIT_SCORE:
            return f"{lemma} {head.lower()} {word_form(tail, split_compounds=False)}"
    return lemma
