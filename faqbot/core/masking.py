"""Mask personal data (e-mail, phone, IBAN) before a customer message is stored."""

import re

# IBAN first: its digit runs would otherwise look like a phone number.
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b", re.I)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A phone number needs a leading + / 0 / (0 and at least 7 digits in total, so that
# "Rechnung 2024" or "49,90 Euro" stay untouched.
_PHONE = re.compile(r"(?<![\w+])(?:\+|00|\(?0)\d[\d \-/()]{5,}\d")


def _phone(match: re.Match) -> str:
    digits = sum(c.isdigit() for c in match.group(0))
    return "[TELEFON]" if digits >= 7 else match.group(0)


def mask(text: str) -> str:
    text = _IBAN.sub("[IBAN]", text)
    text = _EMAIL.sub("[E-MAIL]", text)
    return _PHONE.sub(_phone, text)
