"""End to end over Rasa's REST channel, against the real Rasa server and action server."""
from __future__ import annotations

import uuid

import pytest
from ruamel.yaml import YAML

from actions.knowledge import PROJECT_DIR, load
from helpers import buttons, customs, texts
from test_data import read_nlu

KNOWLEDGE = load()
PARAPHRASES = read_nlu(PROJECT_DIR / "tests" / "e2e_paraphrases.yml")
RESPONSES = YAML(typ="safe").load((PROJECT_DIR / "domain.yml").read_text(encoding="utf-8"))["responses"]


def response_text(name: str) -> str:
    return RESPONSES[name][0]["text"]


def new_sender() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("faq_id", list(KNOWLEDGE))
def test_each_faq_question_gets_its_answer_verbatim(bot, faq_id):
    entry = KNOWLEDGE[faq_id]
    replies = bot.send(new_sender(), entry.question)
    assert texts(replies) == [entry.answer]
    [custom] = customs(replies)
    assert custom["faq_id"] == faq_id and custom["category"] == entry.category
    assert 0.6 <= custom["confidence"] <= 1.0


@pytest.mark.parametrize("faq_id", list(KNOWLEDGE))
def test_a_paraphrase_of_each_faq_question_gets_its_answer(bot, faq_id):
    [paraphrase] = PARAPHRASES[f"faq_{faq_id}"]
    replies = bot.send(new_sender(), paraphrase)
    assert texts(replies) == [KNOWLEDGE[faq_id].answer], paraphrase


@pytest.mark.parametrize("question", [
    "Wie wird das Wetter morgen in Hamburg?",
    "Haben Sie offene Stellen für Werkstudenten?",
    "Erzähl mir einen Witz",
])
def test_out_of_scope_gets_no_faq_answer_but_an_offer(bot, question):
    replies = bot.send(new_sender(), question)
    assert not [c for c in customs(replies) if "faq_id" in c]
    assert not set(texts(replies)) & {e.answer for e in KNOWLEDGE.values()}
    assert texts(replies) == [response_text("utter_offer_handoff")]
    assert "/human_handoff" in [b["payload"] for b in buttons(replies)]


def test_asking_for_a_person_creates_a_stored_ticket(bot):
    sender = new_sender()
    bot.send(sender, "Wie erhalte ich eine Rechnung?")
    replies = bot.send(sender, "Ich möchte bitte mit einem Mitarbeiter sprechen")
    [custom] = customs(replies)
    ticket_id = custom["escalation"]["ticket_id"]
    assert texts(replies) == [response_text("utter_escalated").format(ticket_id=ticket_id)]
    [ticket] = [t for t in bot.tickets() if t["ticket_id"] == ticket_id]
    assert ticket["sender_id"] == sender and ticket["channel"] == "rest"
    assert "Wie erhalte ich eine Rechnung?" in ticket["transcript"]
    assert KNOWLEDGE["erhalte_rechnung"].answer in ticket["transcript"]


def test_accepting_the_offer_escalates_and_declining_does_not(bot):
    accepted, declined = new_sender(), new_sender()
    for sender in (accepted, declined):
        assert texts(bot.send(sender, "Wo ist eigentlich Ihr Firmensitz?")) == \
            [response_text("utter_offer_handoff")]
    replies = bot.send(accepted, "ja gerne")
    ticket_id = customs(replies)[0]["escalation"]["ticket_id"]
    assert texts(replies) == [response_text("utter_escalated").format(ticket_id=ticket_id)]
    [ticket] = [t for t in bot.tickets() if t["ticket_id"] == ticket_id]
    assert ticket["question"] == "Wo ist eigentlich Ihr Firmensitz?"
    assert texts(bot.send(declined, "nein danke")) == [response_text("utter_anything_else")]
    assert declined not in [t["sender_id"] for t in bot.tickets()]
    entry = KNOWLEDGE["login_problemen"]  # the conversation goes on normally
    assert texts(bot.send(declined, entry.question)) == [entry.answer]


def test_pressing_the_handoff_button_twice_gives_one_ticket(bot):
    sender = new_sender()
    bot.send(sender, "Kann ich bei Ihnen eine Grafikkarte kaufen?")
    first = customs(bot.send(sender, "/human_handoff"))[0]["escalation"]["ticket_id"]
    second = customs(bot.send(sender, "/human_handoff"))[0]["escalation"]["ticket_id"]
    assert first == second
    assert [t["sender_id"] for t in bot.tickets()].count(sender) == 1


# A bare keyword that fits several FAQ questions (privacy, retention, encryption).
AMBIGUOUS = "daten"


def test_medium_confidence_asks_meinten_sie_and_a_button_answers(bot):
    sender = new_sender()
    replies = bot.send(sender, AMBIGUOUS)
    assert texts(replies) == [response_text("utter_clarify")]
    options = buttons(replies)
    assert 2 <= len(options) <= 4 and options[-1]["payload"] == "/out_of_scope"
    questions = {e.question: e for e in KNOWLEDGE.values()}
    assert all(b["title"] in questions for b in options[:-1])
    chosen = options[0]
    answer = bot.send(sender, chosen["payload"])
    assert texts(answer) == [questions[chosen["title"]].answer]


def test_none_of_these_leads_to_the_offer(bot):
    sender = new_sender()
    options = buttons(bot.send(sender, AMBIGUOUS))
    assert texts(bot.send(sender, options[-1]["payload"])) == [response_text("utter_offer_handoff")]


def test_small_talk(bot):
    sender = new_sender()
    assert texts(bot.send(sender, "Hallo")) == [response_text("utter_greet")]
    assert texts(bot.send(sender, "bist du ein roboter?")) == [response_text("utter_iamabot")]
    assert texts(bot.send(sender, "Vielen Dank!")) == [response_text("utter_you_are_welcome")]
    assert texts(bot.send(sender, "Tschüss")) == [response_text("utter_goodbye")]


def test_conversations_are_persisted_in_the_tracker_store(bot):
    sender = new_sender()
    bot.send(sender, "Sind meine Daten verschlüsselt?")
    user_texts = [row["data"] for row in bot.tracker_events(sender) if row["type_name"] == "user"]
    assert any("Sind meine Daten verschl" in data for data in user_texts)
