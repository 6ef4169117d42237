"""faqbot.core.masking: personal data is masked where a message leaves the conversation,
and nothing else is touched (the training data pass through it unchanged)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from faqbot.core.knowledge import load
from faqbot.core.masking import MARKERS, mask
from faqbot.core.paths import PROJECT_DIR
from faqbot.core.phrasings import TEST_SETS


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Meine Mail ist max.muster@example.de bitte", "Meine Mail ist [E-MAIL] bitte"),
        ("Rufen Sie 0170 1234567 an", "Rufen Sie [TELEFON] an"),
        ("Tel. +49 30 123456-78", "Tel. [TELEFON]"),
        ("Nummer (030) 1234 5678", "Nummer [TELEFON]"),
        ("0049 89 9876543 bitte", "[TELEFON] bitte"),
        ("IBAN DE89 3704 0044 0532 0130 00 falsch", "IBAN [IBAN] falsch"),
        ("iban DE89370400440532013000", "iban [IBAN]"),
        ("GB29NWBK60161331926819 ist meine", "[IBAN] ist meine"),
        # What the rules already caught and must go on catching.
        ("iban de89 3704 0044 0532 0130 00 bitte", "iban [IBAN] bitte"),
        ("DE89 3704 0044 0532 0130 01 mit Tippfehler", "[IBAN] mit Tippfehler"),
        ("Mail an Max.Muster@Example.co.uk.", "Mail an [E-MAIL]."),
        ("schreiben Sie an info@firma.de. Danke", "schreiben Sie an [E-MAIL]. Danke"),
        ("Handy 0171/1234567", "Handy [TELEFON]"),
        ("Büro (030) 123 45 67", "Büro [TELEFON]"),
        ("Büro 030-1234567", "Büro [TELEFON]"),
        ("Handy 0171 1234567", "Handy [TELEFON]"),
        ("Handy +49 171 1234567", "Handy [TELEFON]"),
        ("Handy +49 (0)171 1234567", "Handy [TELEFON]"),
    ],
)
def test_personal_data_is_masked(text, expected):
    assert mask(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        # Payment cards: grouped or not, Luhn-valid only.
        ("Karte 4111 1111 1111 1111 gültig", "Karte [KARTE] gültig"),
        ("Karte 4111-1111-1111-1111", "Karte [KARTE]"),
        ("meine kreditkarte ist 5500005555555559 oder", "meine kreditkarte ist [KARTE] oder"),
        ("Amex 3782 822463 10005", "Amex [KARTE]"),
        ("Visa 4222222222222 (13 Ziffern)", "Visa [KARTE] (13 Ziffern)"),
        ("Karte 4111 1111 1111 1111 gültig bis 05/27", "Karte [KARTE] gültig bis 05/27"),
        ("Vollbreit ４１１１１１１１１１１１１１１１", "Vollbreit [KARTE]"),
        # IBAN: not the word after it.
        ("AT61 1904 3002 3457 3201 Danke", "[IBAN] Danke"),
        # E-mail, also obfuscated.
        ("Mail an max＠example.org", "Mail an [E-MAIL]"),
        ("Mail an max﹫example.org", "Mail an [E-MAIL]"),
        ("Mail an name(at)example.org", "Mail an [E-MAIL]"),
        ("Mail an name (at) example (dot) org bitte", "Mail an [E-MAIL] bitte"),
        ("Mail an name [at] example [punkt] de", "Mail an [E-MAIL]"),
        ("Mail an name at example dot org", "Mail an [E-MAIL]"),
        ("Mail an name at example.org", "Mail an [E-MAIL]"),
        ("Mail an name@example .org", "Mail an [E-MAIL]"),
        ("Mail an name @ example . org", "Mail an [E-MAIL]"),
        # German phone numbers in brackets.
        ("Handy (+49) 171 1234567", "Handy [TELEFON]"),
        # Dates of birth, and every date with a year.
        ("geboren am 01.02.1990", "geboren am [DATUM]"),
        ("geb. 1.2.90", "geb. [DATUM]"),
        ("Geburtsdatum: 1990-02-01", "Geburtsdatum: [DATUM]"),
        ("ich bin am 1. Februar 1990 geboren", "ich bin am [DATUM] geboren"),
        ("Max Muster, 12.03.1985, Kundennummer 4711", "Max Muster, [DATUM], Kundennummer 4711"),
        ("Bestellung 12345 vom 03.05.2024", "Bestellung 12345 vom [DATUM]"),
        ("am 01/02/1990 und 01-02-1990", "am [DATUM] und [DATUM]"),
        ("geboren am 3. März", "geboren am [DATUM]"),
        ("Mein Geburtstag ist der 12.03.", "Mein Geburtstag ist der [DATUM]"),
        # Several at once.
        (
            "Max, geb. 1.2.1990, max(at)web.de, 0171 1234567, Karte 4111111111111111",
            "Max, geb. [DATUM], [E-MAIL], [TELEFON], Karte [KARTE]",
        ),
    ],
)
def test_more_personal_data_is_masked(text, expected):
    assert mask(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Rechnung 2024 ist falsch",
        "Das kostet 49,90 Euro",
        "Bestellung 12345 ist nicht da",
        "Wo ist mein Paket?",
        # What the new rules must leave alone: 16-digit order numbers failing the Luhn check,
        "Bestellnummer 1234567890123456 fehlt",
        "Bestellung 4111111111111112 ist weg",
        # Dates without a year, times, versions, standards, sizes.
        "Lieferung bis zum 3.5. bitte",
        "um 12.30 Uhr oder von 08:00 - 17:00 Uhr",
        "Version 2.1.10 installiert",
        "ISO 27001 und SOC 2, OAuth 2.0, SAML 2.0",
        "Fehler 500 beim Hochladen",
        "Größen 10/12/14 lieferbar?",
        "rechne mal 17 mal 23",
        "Kundennummer 4711, Artikel 123-456",
        "ab 1.000.000 Zugriffen",
        # "at" and "@" in ordinary sentences.
        "at rest verschlüsselung",
        "Preis @ 5.99 Euro",
        "Ich bin @home. Geht das?",
        "folgen Sie @firma auf Social Media",
        "schreibt mir dann. Punkt.",
    ],
)
def test_ordinary_numbers_stay(text):
    assert mask(text) == text


@pytest.mark.parametrize("text", ["ab12 Ware gibt es nicht", "Modell XY12 abcd efgh ijkl"])
def test_codes_shaped_like_an_iban_stay(text):
    """Neither the mod-97 check nor 10 digits in the account part: no IBAN."""
    assert mask(text) == text


def _examples(path: Path) -> list[str]:
    return [
        line.strip()[2:].strip()
        for block in YAML(typ="safe").load(path.read_text(encoding="utf-8")).get("nlu") or []
        if "intent" in block
        for line in str(block.get("examples") or "").splitlines()
        if line.strip().startswith("- ")
    ]


def test_nothing_in_the_training_data_and_faq_texts_is_masked():
    """False positives would damage the training data: every phrasing (training and test
    sets), every FAQ question, answer and line of the FAQ page passes unchanged."""
    texts = [
        text
        for path in [*(PROJECT_DIR / "data" / "nlu").glob("*.yml"), *(PROJECT_DIR / name for name in TEST_SETS)]
        for text in _examples(path)
    ]
    assert len(texts) > 1000
    for entry in load(PROJECT_DIR / "data" / "faq.yml").values():
        texts += [entry.category, entry.question, entry.answer]
    texts += (PROJECT_DIR / "data" / "faq_seite.txt").read_text(encoding="utf-8").splitlines()
    assert [(text, mask(text)) for text in texts if mask(text) != text] == []


def test_masking_is_idempotent_and_never_raises():
    pieces = list("0123456789 -./()+@＠﹫[]abDE,:") + [
        " at ",
        " dot ",
        "(at)",
        "geboren ",
        "März ",
        "4111 ",
        "0171 ",
        "1990",
        "DE89",
        *MARKERS,
    ]
    rng = random.Random(14)
    for _ in range(20000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
        once = mask(text)
        assert mask(once) == once, text
    assert mask(None) == "" and mask(4711) == "4711"  # a caller's mistake is no reason to fail
    assert mask("".join(MARKERS)) == "".join(MARKERS)


def test_long_input_takes_linear_time():
    """No catastrophic backtracking: 100 000 characters of digits, dots and @ are quick."""
    for text in ("1 " * 50000, "4111 " * 20000, "a@" * 50000, "x at " * 20000, "1.1." * 25000, "a" * 100000):
        started = time.monotonic()
        mask(text)
        assert time.monotonic() - started < 20, text[:20]
