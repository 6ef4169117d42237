import pytest

from faqbot.core.masking import mask


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
    ],
)
def test_personal_data_is_masked(text, expected):
    assert mask(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Rechnung 2024 ist falsch",
        "Das kostet 49,90 Euro",
        "Bestellung 12345 vom 03.05.2024",
        "Wo ist mein Paket?",
    ],
)
def test_ordinary_numbers_stay(text):
    assert mask(text) == text
