"""Mask personal data wherever a customer message leaves the conversation.

Use it wherever a customer's text leaves the conversation: the trainers' review queue
(``faqbot.core.review_store``), every phrasing written to the training data
(``faqbot.core.phrasings``), any log line that would quote a customer. The support team's
webhook and e-mail get the message complete: they answer it.

``mask(text)`` replaces, in this order (earlier rules see the digits first):

    [IBAN]     IBANs, also lower-case and spaced; a random code needs a valid mod-97
               check or at least 10 digits in its account part to count as one
    [E-MAIL]   e-mail addresses, also obfuscated: ``name(at)example.org``, ``name [at]
               example [dot] org``, ``name at example dot org``, ``＠``/``﹫`` for ``@``,
               spaces around ``@`` and before a dot (``name@example .org``)
    [KARTE]    payment card numbers: 13 to 19 digits, grouped by spaces or hyphens or
               not, and only if the Luhn check passes (a 16-digit order number fails it
               nine times in ten and stays)
    [DATUM]    dates with a year (01.02.1990, 1.2.90, 1990-02-01, 01/02/1990, „1. Februar
               1990“), and day and month without a year after „geboren“, „geb.“,
               „Geburtsdatum“, „Geburtstag“
    [TELEFON]  German phone numbers: +49 …, 0049 …, 0171/1234567, (030) 123 45 67,
               030-1234567, 0171 1234567 (a leading + / 00 / 0 and at least 7 digits, so
               prices, years, order numbers and dates stay)

Every date with a year is masked, not only those next to „geboren“: a date of birth is
often given without the word (a name, a date, a customer number in one line), and which
day an order or invoice was from never matters for learning what a customer asks, while a
trainer still sees that a date was there. Dates without a year („bis zum 3.5.“) stay, as
do years alone („Rechnung 2024“): they identify no one. Names are not masked: no rule
tells „Frau Berger“ from „Frau Holle“ reliably, and a wrong one would garble phrasings.

``mask`` is idempotent (the markers contain nothing the rules match) and never raises:
should a rule fail on some input, everything holding a digit or an ``@`` is removed
instead of letting the text through unmasked.
"""

from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)

MARKERS = ("[IBAN]", "[E-MAIL]", "[KARTE]", "[DATUM]", "[TELEFON]")

# --- IBAN -------------------------------------------------------------------------------
# Country code and check digits, then groups of four (optionally spaced) and a last shorter
# group. Matches only at a word start; validated in _iban.
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b", re.I)
_IBAN_LENGTH = range(15, 35)  # Norway's 15 to Saint Lucia's 32 (34 allowed by the standard)
_IBAN_MIN_DIGITS = 10  # in the account part: an IBAN with a typo still counts, "ab12 Ware gibt" not


def _iban_valid(compact: str) -> bool:
    """The ISO 13616 mod-97 check (country and check digits moved to the end, letters as 10..35)."""
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _iban(match: re.Match) -> str:
    candidate = match.group(0)
    # The last groups may be an ordinary word after the IBAN ("… 3201 Dank"): try the longest
    # prefix that ends at a space and passes mod-97, else drop trailing groups without digits.
    prefixes = [candidate] + [candidate[:i] for i in range(len(candidate) - 1, 0, -1) if candidate[i] == " "]
    for prefix in prefixes:
        compact = prefix.replace(" ", "").upper()
        if len(compact) in _IBAN_LENGTH and compact.isascii() and _iban_valid(compact):
            return "[IBAN]" + candidate[len(prefix) :]
    tokens = candidate.split(" ")
    while len(tokens) > 1 and not any(char.isdigit() for char in tokens[-1]):
        tokens.pop()
    prefix = " ".join(tokens)
    compact = prefix.replace(" ", "")
    if len(compact) in _IBAN_LENGTH and sum(char.isdigit() for char in compact[4:]) >= _IBAN_MIN_DIGITS:
        return "[IBAN]" + candidate[len(prefix) :]
    return candidate


# --- E-mail -----------------------------------------------------------------------------
_AT_SIGNS = "@\uff20\ufe6b"  # @, full-width ＠, small ﹫
_DOTS = ".\uff0e"  # ., full-width ．
_OPEN, _CLOSE = r"[(\[{<]", r"[)\]}>]"
_AT = (
    rf"(?:\s*[{_AT_SIGNS}]\s*"  # name@example.org, name @ example.org
    rf"|\s*{_OPEN}\s*(?:at|ät|[{_AT_SIGNS}])\s*{_CLOSE}\s*"  # name(at)example.org, name [at] example.org
    r"|\s+at\s+)"  # name at example dot org (needs a dot and a top-level domain after it)
)
_DOT = (
    rf"(?:\s*[{_DOTS}](?![\s{_DOTS}])"  # example.org, example .org – not "example. Org" (a sentence end)
    rf"|\s+[{_DOTS}]\s+"  # example . org
    rf"|\s*{_OPEN}\s*(?:dot|punkt)\s*{_CLOSE}\s*"  # example(dot)org, example [punkt] org
    r"|\s+(?:dot|punkt)\s+)"  # example dot org
)
# Starts only where a word starts (the look-behind), so a long word costs one try, not one
# per character; the top-level domain has letters only ("Preis @ 5.99" stays).
_EMAIL = re.compile(
    rf"(?<![\w.+\-])[\w.+\-]+{_AT}[\w\-]+(?:{_DOT}[\w\-]+)*{_DOT}[^\W\d_]{{2,24}}(?![\w\-])",
    re.I,
)

# --- Payment cards ----------------------------------------------------------------------
# A run of digit groups separated by single spaces or hyphens, not part of a word, a
# decimal number or a phone number with a leading +.
_DIGIT_RUN = re.compile(r"(?<![\w+.,/\-])\d+(?:(?: ?- ?| )\d+)*(?!\w)")
_DIGIT_GROUP = re.compile(r"\d+")
_CARD_DIGITS = range(13, 20)
_CARD_FIRST_GROUP, _CARD_MIN_GROUP = 4, 3
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # a Luhn digit doubled, its digits summed


def _luhn(digits: str) -> bool:
    values = [int(char) for char in reversed(digits)]
    return (sum(values[0::2]) + sum(_DOUBLED[value] for value in values[1::2])) % 10 == 0


def _cards(match: re.Match) -> str:
    """The run with every card number in it masked; a run may hold more (expiry date, CVC).

    Card numbers are written ungrouped or in groups of 3 to 6 digits, the first of at least
    4 (4-4-4-4, 4-6-5); a last group may be shorter. So a long run like "1 2 3 …" or
    "123 123 …" costs a step per group, and a run of 4-digit groups one Luhn check each.
    """
    run = match.group(0)
    groups = [group.group(0) for group in _DIGIT_GROUP.finditer(run)]
    starts = [group.start() for group in _DIGIT_GROUP.finditer(run)]
    pieces, done, start = [], 0, 0
    while start < len(groups):
        best = None
        # Card numbers never start with 0; phone numbers do.
        if groups[start][0] != "0" and len(groups[start]) >= _CARD_FIRST_GROUP:
            digits = ""
            for end in range(start, len(groups)):
                digits += groups[end]
                if len(digits) > _CARD_DIGITS[-1]:
                    break
                if len(digits) in _CARD_DIGITS and _luhn(digits):
                    best = end
                if len(groups[end]) < _CARD_MIN_GROUP:
                    break
        if best is None:
            start += 1
            continue
        pieces += [run[done : starts[start]], "[KARTE]"]
        done, start = starts[best] + len(groups[best]), best + 1
    return "".join(pieces) + run[done:] if pieces else run


# --- Dates ------------------------------------------------------------------------------
_MONTHS = (
    r"(?:januar|jänner|jaenner|februar|feber|märz|maerz|april|mai|juni|juli|august|september|oktober|november"
    r"|dezember|jan|feb|mär|mrz|apr|jun|jul|aug|sept|sep|okt|nov|dez)\b\.?"
)
_NOT_BEFORE, _NOT_AFTER = r"(?<![\w.,/\-])", r"(?!\w|[.,/\-]\d)"
_DATE_DOTTED = re.compile(rf"{_NOT_BEFORE}(\d{{1,2}}) ?\. ?(\d{{1,2}}) ?\. ?(\d{{4}}|\d{{2}}){_NOT_AFTER}")
_DATE_SLASHED = re.compile(rf"{_NOT_BEFORE}(\d{{1,2}})([/\-])(\d{{1,2}})\2(\d{{4}}){_NOT_AFTER}")
_DATE_ISO = re.compile(rf"{_NOT_BEFORE}(\d{{4}})-(\d{{1,2}})-(\d{{1,2}}){_NOT_AFTER}")
_DATE_WRITTEN = re.compile(rf"(?<![\w.,])(\d{{1,2}})\.? ?{_MONTHS} ?(\d{{4}})(?!\w)", re.I)
# Day and month without a year, shortly after a word for the date of birth.
_BIRTH = re.compile(
    r"(\bgeb(?:oren\b|urts\w*|dat\w*|\.)[^\d\[\]]{0,30}?)"
    rf"(?<![\w.,])\d{{1,2}}(?: ?\. ?\d{{1,2}}\.?| ?\.? ?{_MONTHS})(?!\w|[.,]?\d)",
    re.I,
)
# "Version 2.1.10", "v1.2.24": numbers, not dates.
_VERSION_BEFORE = re.compile(r"(?:\bv|version|update|release|build|firmware)\s*$", re.I)


def _plausible(day: str, month: str, year: str) -> bool:
    return 1 <= int(day) <= 31 and 1 <= int(month) <= 12 and (len(year) == 2 or 1900 <= int(year) <= 2099)


def _date(match: re.Match, day: int, month: int, year: int) -> str:
    if _VERSION_BEFORE.search(match.string, max(0, match.start() - 12), match.start()):
        return match.group(0)
    plausible = _plausible(match.group(day), match.group(month), match.group(year))
    return "[DATUM]" if plausible else match.group(0)


def _dates(text: str) -> str:
    text = _DATE_ISO.sub(lambda match: _date(match, 3, 2, 1), text)
    text = _DATE_DOTTED.sub(lambda match: _date(match, 1, 2, 3), text)
    text = _DATE_SLASHED.sub(lambda match: _date(match, 1, 3, 4), text)
    text = _DATE_WRITTEN.sub(
        lambda match: "[DATUM]" if _plausible(match.group(1), "1", match.group(2)) else match.group(0), text
    )
    return _BIRTH.sub(lambda match: match.group(1) + "[DATUM]", text)


# --- Phone numbers ----------------------------------------------------------------------
# A leading + / 00 / 0 (or "(+", "(0") and at least 7 digits in total, so that
# "Rechnung 2024" or "49,90 Euro" stay untouched.
_PHONE = re.compile(r"(?<![\w+])(?:\(?\+|00|\(?0)\d[\d \-/()]{5,}\d")
_PHONE_MIN_DIGITS = 7


def _phone(match: re.Match) -> str:
    digits = sum(char.isdigit() for char in match.group(0))
    return "[TELEFON]" if digits >= _PHONE_MIN_DIGITS else match.group(0)


# --- All of it --------------------------------------------------------------------------
_MAX_PASSES = 5
_LAST_RESORT = re.compile(rf"\S*[\d{_AT_SIGNS}]\S*")


def _mask(text: str) -> str:
    text = _IBAN.sub(_iban, text)
    text = _EMAIL.sub("[E-MAIL]", text)
    text = _DIGIT_RUN.sub(_cards, text)
    text = _dates(text)  # before the phone numbers: "01-02-1990" is no phone number
    return _PHONE.sub(_phone, text)


def mask(text: str) -> str:
    """The text with personal data replaced by the markers above; never raises."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    try:
        # A marker can make a neighbour maskable that was part of a word before ("6+4930…"
        # after "0171 816"): repeat until nothing changes, so that mask(mask(x)) == mask(x).
        for _ in range(_MAX_PASSES):
            masked = _mask(text)
            if masked == text:
                return text
            text = masked
        return text
    except Exception as error:  # no rule should fail; if one does, remove rather than leak
        logger.error("Maskierung fehlgeschlagen (%s): alles mit Ziffern oder @ entfernt", type(error).__name__)
        return _LAST_RESORT.sub("[ENTFERNT]", text)
