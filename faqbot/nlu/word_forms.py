"""German word forms: lowercase lemmas and compound parts.

The offline stand-in of de_core_news_sm only has a lookup lemmatizer that is
case-sensitive („Rechnungen“ → „Rechnung“, „rechnungen“ → „rechnungen“), and no model
splits compounds, while customers write in lowercase and with their own compounds
(„Rechnungsadresse“, „Preisnachlass“). ``word_forms`` makes these the same words:
simplemma's German dictionary (it ships inside the package; no download), lowercased,
plus the parts of a compound the bot does not know as a whole but whose parts it knows
(„rechnungsadresse“ → „rechnung“, „adresse“; with the linking „s“ of German compounds).

Used for the word features of faqbot.nlu.faq_ranker (README, "Quality and speed"). Split
against the model's own vocabulary rather than with compound-split, whose n-gram table
takes 355 MB in every process that parses.
"""

from __future__ import annotations

import functools
from collections.abc import Collection

MIN_COMPOUND_LENGTH = 8
MAX_WORD_LENGTH = 40  # longer „words“ are noise or an attack (splitting costs grow with the square)
MIN_PART_LENGTH = 3
LINKING = ("s", "es", "n", "en")  # Fugen: Rechnung|s|adresse, Kunde|n|konto


@functools.lru_cache(maxsize=50_000)
def lemma(word: str) -> str:
    if len(word) > MAX_WORD_LENGTH:
        return word.lower()
    import simplemma

    return simplemma.lemmatize(word, lang="de").lower()


def load_dictionary() -> None:
    """simplemma reads its German dictionary on first use (about 2 s): at model load, not
    in a customer's first message."""
    lemma.__wrapped__("Rechnungen")


def word_forms(word: str, known: Collection[str] = ()) -> list[str]:
    """``word``'s lowercase lemma, plus its parts if it is a compound of ``known`` words."""
    form = lemma(word)
    if form in known or not MIN_COMPOUND_LENGTH <= len(word) <= MAX_WORD_LENGTH or not word.isalpha():
        return [form]
    return [form, *compound_parts(word.lower(), known)]


def compound_parts(word: str, known: Collection[str]) -> list[str]:
    """The longest known last part and a known first part (linking letters allowed), or none."""
    for cut in range(MIN_PART_LENGTH, len(word) - MIN_PART_LENGTH + 1):
        head, tail = word[:cut], lemma(word[cut:])
        if tail not in known:
            continue
        heads = [head] + [head[: -len(link)] for link in LINKING if head.endswith(link)]
        for candidate in heads:
            if len(candidate) >= MIN_PART_LENGTH and lemma(candidate) in known:
                return [lemma(candidate), tail]
    return []
