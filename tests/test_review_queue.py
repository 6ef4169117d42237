"""The review queue records what the bot missed, from real conversations over REST."""

from __future__ import annotations

import pytest

from faqbot.core.review_store import Entry, ReviewStore, sender_hash
from faqbot.server.review_broker import ReviewQueue
from tests.helpers import buttons, customs


@pytest.fixture(scope="module")
def queue(bot):
    store = ReviewStore(bot.servers.var_dir / "review.db")
    yield store
    store.close()


def recorded(queue: ReviewStore, sender: str) -> list[Entry]:
    return [entry for entry in queue.entries(status=None) if entry.sender == sender_hash(sender)]


def only(queue: ReviewStore, sender: str) -> Entry:
    entries = recorded(queue, sender)
    assert len(entries) == 1, [(entry.text, entry.kind) for entry in entries]
    return entries[0]


def test_the_queue_lands_in_the_servers_var_dir(bot, queue):
    assert queue.path.parent == bot.servers.var_dir


def test_a_confidently_answered_faq_question_is_not_recorded(bot, queue):
    replies = bot.send("rq-faq", "Wie erhalte ich eine Rechnung?")
    assert customs(replies)[0]["faq_id"] == "erhalte_rechnung"
    bot.send("rq-faq", "danke")
    assert recorded(queue, "rq-faq") == []


def test_an_out_of_scope_question_is_recorded_with_its_ranking(bot, queue):
    replies = bot.send("rq-oos", "Wie wird das Wetter morgen in Berlin?")
    assert {button["payload"] for button in buttons(replies)} == {"/human_handoff", "/deny"}
    bot.send("rq-oos", "Nein, danke")
    entry = only(queue, "rq-oos")
    assert (entry.text, entry.kind, entry.intent, entry.outcome, entry.status) == (
        "Wie wird das Wetter morgen in Berlin?",
        "out_of_scope",
        "out_of_scope",
        "declined",
        "open",
    )
    assert 1 <= len(entry.ranking) <= 3 and entry.ranking[0]["name"] == "out_of_scope"
    assert entry.sender != "rq-oos"  # only a hash of the conversation id


def test_a_clarification_records_the_button_the_customer_picked(bot, queue):
    replies = bot.send("rq-clarify", "funktioniert das im flugzeug ohne internet")
    offered = [button["payload"] for button in buttons(replies) if button["payload"].startswith("/faq_")]
    assert offered, replies
    bot.send("rq-clarify", offered[0])
    entry = only(queue, "rq-clarify")  # the button press itself is not a message to review
    assert (entry.text, entry.kind, entry.outcome) == (
        "funktioniert das im flugzeug ohne internet",
        "clarification",
        f"faq:{offered[0][5:]}",
    )
    assert entry.picked_faq == offered[0][5:]


def test_a_fallback_followed_by_escalation(bot, queue):
    replies = bot.send("rq-escalate", "Mein Drucker macht seltsame Geräusche beim Import")
    assert not [b for b in buttons(replies) if b["payload"].startswith("/faq_")], replies
    bot.send("rq-escalate", "Ich möchte mit einem Mitarbeiter sprechen")  # asks for the e-mail
    bot.send("rq-escalate", "drucker.kunde@beispiel.de")  # answers to the form: not for review
    replies = bot.send("rq-escalate", "ja")
    assert "escalation" in customs(replies)[0]
    bot.send("rq-escalate", "Das Geräusch kommt beim Import von Rechnungen")  # for the support team
    entry = only(queue, "rq-escalate")
    assert entry.text == "Mein Drucker macht seltsame Geräusche beim Import"
    assert entry.kind in ("fallback", "out_of_scope") and entry.outcome == "escalated"


def test_an_answered_question_the_customer_escalates_after_is_recorded(bot, queue):
    bot.send("rq-answered", "Wie erhalte ich eine Rechnung?")
    bot.send(
        "rq-answered", "Ich möchte mit einem Mitarbeiter sprechen", metadata={"customer": {"email": "rq@beispiel.de"}}
    )  # known: no form
    entry = only(queue, "rq-answered")
    assert (entry.text, entry.kind, entry.outcome, entry.guess) == (
        "Wie erhalte ich eine Rechnung?",
        "escalation",
        "escalated",
        "erhalte_rechnung",
    )


def test_an_faq_answer_at_low_confidence_is_recorded(bot, queue):
    replies = bot.send("rq-low", "rechnung zahlung")
    assert customs(replies)[0]["confidence"] < 0.8, replies
    entry = only(queue, "rq-low")
    assert (entry.kind, entry.intent, entry.outcome) == ("low_confidence", "faq_" + customs(replies)[0]["faq_id"], None)


def test_personal_data_is_masked_before_it_is_stored(bot, queue):
    bot.send(
        "rq-mask",
        "Meine Mail anna.muster@example.org, Tel. +49 170 1234567, "
        "IBAN DE89 3704 0044 0532 0130 00 – wie wird das Wetter?",
    )
    text = only(queue, "rq-mask").text
    assert "[E-MAIL]" in text and "[TELEFON]" in text and "[IBAN]" in text
    assert "anna" not in text and "1234567" not in text and "3704" not in text


def test_messages_without_letters_are_not_recorded(bot, queue):
    bot.send("rq-symbols", "??? 123")
    assert recorded(queue, "rq-symbols") == []


def test_an_escalation_through_a_form_records_the_request_not_the_form_answers(tmp_path):
    """The escalation flow may ask for details in a form first (events as Rasa publishes them)."""
    store = ReviewStore(tmp_path / "review.db")
    queue = ReviewQueue(store)

    def user(text: str, intent: str, confidence: float) -> dict:
        return {
            "event": "user",
            "text": text,
            "parse_data": {
                "intent": {"name": intent, "confidence": confidence},
                "intent_ranking": [{"name": intent, "confidence": confidence}],
            },
        }

    for event in [
        {"event": "action", "name": "action_session_start"},
        {"event": "action", "name": "action_listen"},
        user("Ich will mit einem Menschen reden", "human_handoff", 0.97),
        {"event": "active_loop", "name": "escalation_form"},
        {"event": "bot", "text": "Worum geht es?", "data": {}},
        {"event": "action", "name": "action_listen"},
        user("anna@example.org wegen meinem Vertrag", "nlu_fallback", 0.6),
        {"event": "active_loop", "name": None},
        {"event": "bot", "text": "Ticket T-1", "data": {"custom": {"escalation": {"ticket_id": "T-1"}}}},
        {"event": "action", "name": "action_listen"},
    ]:
        queue.handle({"sender_id": "form-1", **event})
    entries = store.entries(status=None)
    assert [(entry.text, entry.kind, entry.outcome) for entry in entries] == [
        ("Ich will mit einem Menschen reden", "escalation", "escalated")
    ]
    store.close()


def test_stored_text_is_masked_without_control_characters_and_cut(tmp_path):
    store = ReviewStore(tmp_path / "review.db")
    entry_id = store.record("Rechnung\x1b[31m an anna@example.org " + "x" * 5000, "s", "fallback")
    text = store.entries()[0].text
    assert store.entries()[0].id == entry_id
    assert text.startswith("Rechnung [31m an [E-MAIL] x") and len(text) == 2000
    store.close()
