"""Bad input over REST: a friendly German reply or a clear HTTP error, never a crash or a loss."""

from __future__ import annotations

import json
import uuid

import pytest
from helpers import texts
from ruamel.yaml import YAML

from faqbot.core.knowledge import load
from faqbot.core.paths import PROJECT_DIR

RESPONSES = YAML(typ="safe").load((PROJECT_DIR / "domain.yml").read_text(encoding="utf-8"))["responses"]
# Everything the bot may say: FAQ answers verbatim and the domain's responses. Responses
# with {placeholders} are matched by their fixed beginning.
KNOWN_TEXTS = {e.answer for e in load().values()}
KNOWN_PREFIXES = [r[0]["text"].split("{")[0] for r in RESPONSES.values()]


def is_known_german_reply(text: str) -> bool:
    return text in KNOWN_TEXTS or any(text.startswith(prefix) for prefix in KNOWN_PREFIXES)


@pytest.fixture(scope="module")
def earlier_conversation(bot):
    """A conversation and a ticket that exist before the bad input arrives."""
    sender = f"vorher-{uuid.uuid4().hex[:8]}"
    bot.send(sender, "Wie erhalte ich eine Rechnung?")
    bot.send(sender, "Ich möchte mit einem Menschen sprechen", metadata={"customer": {"email": "v@beispiel.de"}})
    bot.send(sender, "zurück zum Bot")  # the ticket stays; the bot answers again
    return sender, len(bot.tracker_events(sender)), [t["ticket_id"] for t in bot.tickets()]


BAD_MESSAGES = {
    "leer": "",
    "nur_leerzeichen": "   \n\t  ",
    "20000_zeichen": ("Ich habe eine Frage zu meiner Rechnung und weiß nicht weiter. " * 400)[:20000],
    "nur_emoji": "😀🙈🔥👍",
    "html_script": "<script>alert('x')</script><b>Hallo</b><img src=x onerror=alert(1)>",
    "englisch": "Hello, how can I get in touch with a human being about my parcel?",
    "steuerzeichen": "Rech\x00nung\x1b[31m \x07bitte\x08",
    "binaer_als_text": bytes(range(256)).decode("latin-1"),
    "sql": "'; DROP TABLE events; --",
    "payload_unbekannt": "/gibt_es_nicht",
}


@pytest.mark.parametrize("name", list(BAD_MESSAGES))
def test_bad_message_gets_a_friendly_german_reply(bot, earlier_conversation, name):
    replies = bot.send(f"bad-{name}-{uuid.uuid4().hex[:6]}", BAD_MESSAGES[name])
    assert texts(replies), f"no reply to {name}"
    assert all(is_known_german_reply(text) for text in texts(replies)), texts(replies)
    assert "<script>" not in json.dumps(replies)
    assert bot.alive()


MALFORMED = [
    (b"kein json", "invalid_json"),
    (b"", "invalid_body"),
    (b"[1, 2]", "invalid_body"),
    (b'{"sender": "x"}', "invalid_message"),
    (b'{"sender": "x", "message": null}', "invalid_message"),
    (b'{"sender": "x", "message": 42}', "invalid_message"),
    (b'{"sender": ["x"], "message": "hallo"}', "invalid_sender"),
    # Without a sender, Rasa put every such request into one conversation "default":
    # one customer saw another's e-mail address in the form's question.
    (b'{"message": "hallo"}', "invalid_sender"),
    (b'{"sender": "", "message": "hallo"}', "invalid_sender"),
    (b'{"sender": "   ", "message": "hallo"}', "invalid_sender"),
    (json.dumps({"sender": "k" * 129, "message": "hallo"}).encode(), "invalid_sender"),
    (b'{"sender": "kunde\\n2", "message": "hallo"}', "invalid_sender"),
    (b'{"sender": "x", "message": "hallo", "metadata": "kunde"}', "invalid_metadata"),
    (b'{"sender": "x", "message": "hallo", "metadata": 42}', "invalid_metadata"),
    (b'{"sender": "x", "message": "hallo", "metadata": ["kunde"]}', "invalid_metadata"),
    (json.dumps({"sender": "x", "message": "hallo", "metadata": {"n": "n" * 5000}}).encode(), "metadata_too_large"),
    (json.dumps({"sender": "x", "message": "hallo", "metadata": {"n": "n" * 70000}}).encode(), "request_too_large"),
    (bytes(range(256)) * 8, "invalid_json"),
    (json.dumps({"sender": "x", "message": "a" * 60_000}).encode(), "message_too_long"),
]


@pytest.mark.parametrize("body, error", MALFORMED, ids=[f"{error}-{n}" for n, (_, error) in enumerate(MALFORMED)])
def test_malformed_request_gets_a_clear_http_error(bot, earlier_conversation, body, error):
    response = bot.session.post(bot.webhook, data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code in (400, 413)
    assert response.json()["error"] == error
    assert "Erwartet wird JSON" in response.json()["message"]
    assert bot.alive()


def test_refused_requests_store_nothing(bot):
    """A refused request leaves no conversation behind, not even Rasa's shared "default"."""
    for body in ({"message": "hallo"}, {"sender": "groß", "message": "x", "metadata": {"n": "n" * 100_000}}):
        assert bot.session.post(bot.webhook, json=body, timeout=30).status_code in (400, 413)
    assert bot.tracker_events("default") == [] and bot.tracker_events("groß") == []


def test_a_sender_at_the_limit_is_a_conversation_of_its_own(bot):
    sender = "k-" + "ü" * 126  # 128 characters, printable
    entry = load()["erhalte_rechnung"]
    assert texts(bot.send(sender, entry.question)) == [entry.answer]
    assert bot.tracker_events(sender)


def test_nothing_stored_is_lost_and_the_bot_still_answers(bot, earlier_conversation):
    sender, events_before, tickets_before = earlier_conversation
    assert len(bot.tracker_events(sender)) >= events_before
    assert set(tickets_before) <= {t["ticket_id"] for t in bot.tickets()}
    entry = load()["daten_verschluesselt"]
    assert texts(bot.send(sender, entry.question)) == [entry.answer]
