"""Text helpers for customer messages, shared by the channels, the review queue and the tools."""

from __future__ import annotations

import re
import unicodedata

# C0/C1 control characters except tab and newline: they mean nothing to the NLU, garble a
# trainer's terminal and some databases (PostgreSQL) refuse NUL in text.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LETTER = re.compile(r"[^\W\d_]")
_WORD = re.compile(r"[^\W\d_]{2}")


def clean_text(text: str) -> str:
    """NFC-normalised, without control characters (tab and newline stay)."""
    return CONTROL_CHARACTERS.sub("", unicodedata.normalize("NFC", text))


def one_line(text: str) -> str:
    """Control characters, tabs and newlines as single spaces: for one-line displays and YAML lists."""
    return re.sub(r"\s+", " ", CONTROL_CHARACTERS.sub(" ", text)).strip()


def has_letters(text: str) -> bool:
    """At least one letter (not only digits, emoji or symbols)."""
    return bool(_LETTER.search(text or ""))


def has_word(text: str) -> bool:
    """At least two letters in a row: something that can be read as a word."""
    return bool(_WORD.search(text or ""))
