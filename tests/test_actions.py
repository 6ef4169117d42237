"""The custom actions, with rasa-sdk's own Tracker and CollectingDispatcher."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import FollowupAction, SlotSet, UserUtteranceReverted
from rasa_sdk.executor import CollectingDispatcher
from ruamel.yaml import YAML
from test_rest_conversations import response_text

from actions import actions
from actions.actions import (
    MAX_TRANSCRIPTS,
    ActionAnswerFaq,
    ActionDeclineHandoff,
    ActionEscalate,
    ActionHandleFallback,
    ActionSendTranscript,
    ActionTicketStatus,
)
from actions.handoff import (
    ActionAskHandoffMessage,
    ActionBackToBot,
    ValidateEscalationForm,
    ValidateHandoffForm,
    email_in,
)
from faqbot.core.knowledge import CachedKnowledge, load
from faqbot.core.paths import PROJECT_DIR
from faqbot.core.tickets import TicketStore

KNOWLEDGE = load()
INVOICE = KNOWLEDGE["erhalte_rechnung"]
PAYMENT_DATA = KNOWLEDGE["zahlungsdaten_aendern"]


@pytest.fixture(autouse=True)
def ticket_db(tmp_path, monkeypatch):
    """Each test gets its own ticket store and a fresh knowledge cache."""
    path = tmp_path / "tickets.db"
    monkeypatch.setattr(actions, "_ticket_store", TicketStore(f"sqlite:///{path}"))
    monkeypatch.setattr(actions, "knowledge", CachedKnowledge())
    return path


def user_event(
    text: str, intent: str | None, confidence: float = 0.9, ranking: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    parse = {
        "text": text,
        "intent": {"name": intent, "confidence": confidence},
        "intent_ranking": ranking or [{"name": intent, "confidence": confidence}],
        "entities": [],
    }
    return {"event": "user", "text": text, "timestamp": 1764000000.0, "parse_data": parse, "input_channel": "rest"}


def tracker_for(*events: dict[str, Any], slots: dict[str, Any] | None = None) -> Tracker:
    events = list(events)
    bot_and_user = [{"event": "action", "name": "action_listen", "timestamp": 1764000000.0}] + events
    latest = next(e["parse_data"] for e in reversed(events) if e["event"] == "user")
    return Tracker(
        "kunde-42", slots or {"handoff_offered": False}, latest, bot_and_user, False, None, None, "action_listen"
    )


DOMAIN = YAML(typ="safe").load((PROJECT_DIR / "domain.yml").read_text(encoding="utf-8"))


def run(action, tracker: Tracker, domain: dict[str, Any] | None = None):
    """The action as the Rasa server runs it, with the project's domain unless another is given."""
    dispatcher = CollectingDispatcher()
    events = action.run(dispatcher, tracker, DOMAIN if domain is None else domain)
    return dispatcher.messages, events


def test_a_faq_newer_than_the_dialogue_model_is_answered_by_the_dialogues_fallback():
    """Created and trained in the inbox: the NLU knows it, the running Rasa server's domain not."""
    older_domain = {"intents": ["greet", {"out_of_scope": {"use_entities": True}}]}
    tracker = tracker_for(user_event("wo finde ich meine rechnung", "faq_erhalte_rechnung", 0.91))
    messages, events = run(ActionHandleFallback(), tracker, older_domain)
    assert messages[0]["text"] == INVOICE.answer and messages[0]["custom"]["faq_id"] == "erhalte_rechnung"
    assert events == [FollowupAction("action_listen")]  # no rule ends the turn


def test_a_faq_newer_than_the_dialogue_model_is_offered_with_its_question_as_the_payload():
    ranking = [{"name": "nlu_fallback", "confidence": 0.6}, {"name": "faq_erhalte_rechnung", "confidence": 0.5}]
    older_domain = {"intents": ["greet"]}
    tracker = tracker_for(user_event("rechnung?", "nlu_fallback", 0.6, ranking))
    messages, _ = run(ActionHandleFallback(), tracker, older_domain)
    assert messages[0]["buttons"][0] == {"title": INVOICE.question, "payload": INVOICE.question}


@pytest.mark.parametrize(
    "intent, domain",
    [("greet", {"intents": ["greet"]}), ("faq_erhalte_rechnung", {"intents": [{"faq_erhalte_rechnung": {}}]}),
     ("faq_gibt_es_nicht", {"intents": []})],
)  # fmt: skip
def test_any_other_turn_without_a_rule_gets_rasas_default_fallback(intent, domain):
    messages, events = run(ActionHandleFallback(), tracker_for(user_event("hm", intent, 0.9)), domain)
    assert [message["response"] for message in messages] == ["utter_default"]
    assert events == [UserUtteranceReverted(), FollowupAction("action_listen")]


def test_answer_is_the_faq_answer_verbatim_with_a_custom_payload():
    messages, events = run(
        ActionAnswerFaq(), tracker_for(user_event("wo finde ich meine rechnung", "faq_erhalte_rechnung", 0.93))
    )
    assert messages[0]["text"] == INVOICE.answer
    assert messages[0]["custom"] == {"faq_id": "erhalte_rechnung", "category": INVOICE.category, "confidence": 0.93}
    assert events == []


def test_answer_resets_a_pending_handoff_offer():
    _, events = run(
        ActionAnswerFaq(), tracker_for(user_event("rechnung", "faq_erhalte_rechnung"), slots={"handoff_offered": True})
    )
    assert events == [SlotSet("handoff_offered", False)]


def test_corrected_answer_is_used_without_retraining(tmp_path, monkeypatch):
    faq_file = tmp_path / "faq.yml"
    original = (PROJECT_DIR / "data" / "faq.yml").read_text(encoding="utf-8")
    faq_file.write_text(original.replace(INVOICE.answer, "Korrigierte Antwort."), encoding="utf-8")
    monkeypatch.setenv("FAQBOT_FAQ_FILE", str(faq_file))
    messages, _ = run(ActionAnswerFaq(), tracker_for(user_event("rechnung", "faq_erhalte_rechnung")))
    assert messages[0]["text"] == "Korrigierte Antwort."


@pytest.mark.parametrize("problem", ["unknown_intent", "unreadable_file"])
def test_internal_error_escalates_instead_of_crashing(problem, tmp_path, monkeypatch, ticket_db):
    intent = "faq_gibt_es_nicht" if problem == "unknown_intent" else "faq_erhalte_rechnung"
    if problem == "unreadable_file":
        broken = tmp_path / "kaputt.yml"
        broken.write_text("faqs: [unvollständig", encoding="utf-8")
        monkeypatch.setenv("FAQBOT_FAQ_FILE", str(broken))
    messages, _ = run(ActionAnswerFaq(), tracker_for(user_event("frage", intent)))
    ticket_id = messages[0]["custom"]["escalation"]["ticket_id"]
    assert messages[0]["response"] == "utter_escalated" and messages[0]["ticket_id"] == ticket_id
    with sqlite3.connect(ticket_db) as connection:
        assert connection.execute("SELECT ticket_id FROM tickets").fetchall() == [(ticket_id,)]


def test_medium_confidence_offers_the_likely_questions_as_buttons():
    ranking = [
        {"name": "nlu_fallback", "confidence": 0.6},
        {"name": "faq_erhalte_rechnung", "confidence": 0.45},
        {"name": "faq_zahlungsdaten_aendern", "confidence": 0.40},
        {"name": "greet", "confidence": 0.1},
        {"name": "faq_passiert_zahlungsverzug", "confidence": 0.03},
    ]
    messages, events = run(
        ActionHandleFallback(), tracker_for(user_event("rechnung zahlungsdaten", "nlu_fallback", 0.6, ranking))
    )
    assert messages[0]["response"] == "utter_clarify"
    assert messages[0]["buttons"] == [
        {"title": INVOICE.question, "payload": "/faq_erhalte_rechnung"},
        {"title": PAYMENT_DATA.question, "payload": "/faq_zahlungsdaten_aendern"},
        {"title": "Keine davon", "payload": "/out_of_scope"},
    ]
    assert events == []


def test_low_confidence_offers_the_support_team():
    ranking = [{"name": "nlu_fallback", "confidence": 0.6}, {"name": "faq_erhalte_rechnung", "confidence": 0.08}]
    messages, events = run(
        ActionHandleFallback(), tracker_for(user_event("wie wird das wetter", "nlu_fallback", 0.6, ranking))
    )
    assert messages[0]["response"] == "utter_offer_handoff"
    assert events == [SlotSet("handoff_offered", True)]


def test_out_of_scope_offers_the_support_team_despite_faint_faq_guesses():
    ranking = [{"name": "out_of_scope", "confidence": 0.7}, {"name": "faq_erhalte_rechnung", "confidence": 0.2}]
    messages, _ = run(
        ActionHandleFallback(), tracker_for(user_event("wo ist mein paket", "out_of_scope", 0.7, ranking))
    )
    assert messages[0]["response"] == "utter_offer_handoff"


def test_out_of_scope_with_a_close_faq_question_asks_meinten_sie_first():
    # Held-out: „verlängert sich das Abo von selbst“ was out_of_scope at 0.61, its FAQ at 0.37.
    ranking = [
        {"name": "out_of_scope", "confidence": 0.61},
        {"name": "faq_flexibel_vertraege_laufzeiten", "confidence": 0.37},
        {"name": "faq_erhalte_rechnung", "confidence": 0.02},
    ]
    text = "verlängert sich das abo von selbst"
    messages, events = run(ActionHandleFallback(), tracker_for(user_event(text, "out_of_scope", 0.61, ranking)))
    assert messages[0]["response"] == "utter_clarify"
    assert [button["payload"] for button in messages[0]["buttons"]] == [
        "/faq_flexibel_vertraege_laufzeiten",
        "/out_of_scope",  # „Keine davon“ then offers the support team
    ]
    assert events == []


@pytest.mark.parametrize("text", ["", "   ", "😀😀😀", "?!? 123", "\x00\x07"])
def test_input_without_words_asks_for_words(text):
    messages, events = run(ActionHandleFallback(), tracker_for(user_event(text, "nlu_fallback", 0.3)))
    assert [m["response"] for m in messages] == ["utter_ask_for_words"] and events == []


def test_escalation_creates_one_ticket_with_transcript_and_question(ticket_db):
    tracker = tracker_for(
        user_event("Hallo", "greet"),
        {"event": "bot", "text": "Guten Tag!", "timestamp": 1764000001.0},
        user_event(
            "Kann ich in Bitcoin zahlen?",
            "nlu_fallback",
            0.4,
            [
                {"name": "nlu_fallback", "confidence": 0.6},
                {"name": "faq_zahlungsmethoden_akzeptieren", "confidence": 0.4},
            ],
        ),
        {
            "event": "bot",
            "text": "Diese Frage kann ich leider nicht beantworten.",
            "data": {"buttons": [{"title": "Ja, bitte weitergeben", "payload": "/human_handoff"}]},
            "timestamp": 1764000002.0,
        },
        user_event("/human_handoff", "human_handoff", 1.0),
    )
    messages, _ = run(ActionEscalate(), tracker)
    ticket_id = messages[0]["custom"]["escalation"]["ticket_id"]
    assert ticket_id.startswith("T-") and messages[0]["response"] == "utter_escalated"
    again, _ = run(ActionEscalate(), tracker)  # a second click: the same ticket
    assert again[0]["custom"]["escalation"]["ticket_id"] == ticket_id
    assert again[0]["response"] == "utter_escalated_again"
    ticket = actions.ticket_store().get(ticket_id)
    assert ticket.question == "Kann ich in Bitcoin zahlen?"
    assert ticket.faq_guess == "zahlungsmethoden_akzeptieren" and ticket.confidence == 0.4
    assert [line["text"] for line in ticket.transcript] == [
        "Hallo",
        "Guten Tag!",
        "Kann ich in Bitcoin zahlen?",
        "Diese Frage kann ich leider nicht beantworten.",
        "Ja, bitte weitergeben",  # what the customer clicked, not the internal command
    ]
    assert ticket.channel == "rest" and ticket.sender_id == "kunde-42"


def test_escalation_with_store_down_tells_the_customer(monkeypatch):
    class BrokenStore:
        def create(self, **kwargs):
            raise OSError("disk full")

    monkeypatch.setattr(actions, "_ticket_store", BrokenStore())
    messages, _ = run(ActionEscalate(), tracker_for(user_event("mensch bitte", "human_handoff")))
    assert [m["response"] for m in messages] == ["utter_escalation_failed"]


def test_declining_the_offer_resets_it():
    messages, events = run(
        ActionDeclineHandoff(), tracker_for(user_event("nein", "deny"), slots={"handoff_offered": True})
    )
    assert messages[0]["response"] == "utter_anything_else"
    assert events == [SlotSet("handoff_offered", False)]


def test_escalation_outside_support_hours_says_when_the_team_answers(tmp_path, monkeypatch):
    config = tmp_path / "support.yml"  # open one minute a week: practically always closed
    config.write_text('support_hours:\n  timezone: Europe/Berlin\n  sun: "03:00-03:01"\n', encoding="utf-8")
    monkeypatch.setenv("FAQBOT_SUPPORT_CONFIG", str(config))
    messages, _ = run(ActionEscalate(), tracker_for(user_event("mensch bitte", "human_handoff")))
    assert [m["response"] for m in messages] == ["utter_escalated", "utter_support_closed"]
    assert messages[1]["next_opening"].endswith("um 3:00 Uhr")
    assert messages[0]["reply_by"] == "so bald wie möglich"  # no reply_within_hours in this support.yml
    assert "reply_by" not in messages[0]["custom"]["escalation"]


def test_escalation_promises_a_time_frame_in_working_hours(tmp_path, monkeypatch):
    config = tmp_path / "support.yml"  # open one minute a week: one working hour takes 60 weeks
    config.write_text(
        'reply_within_hours: 0.01\nsupport_hours:\n  timezone: Europe/Berlin\n  sun: "03:00-03:01"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("FAQBOT_SUPPORT_CONFIG", str(config))
    messages, _ = run(ActionEscalate(), tracker_for(user_event("mensch bitte", "human_handoff")))
    reply_by = datetime.fromisoformat(messages[0]["custom"]["escalation"]["reply_by"])
    # 36 s of working time, from Sunday 3:00 Berlin time on: promised for 4:00 (the full hour).
    assert (reply_by.weekday(), reply_by.hour, reply_by.minute) == (6, 4, 0)
    assert messages[0]["reply_by"].startswith("in der Regel bis ") and messages[0]["reply_by"].endswith("um 4:00 Uhr")


def test_escalation_with_the_shipped_support_yml_promises_eight_hours(monkeypatch):
    monkeypatch.delenv("FAQBOT_SUPPORT_CONFIG", raising=False)
    before = datetime.now(timezone.utc)
    messages, _ = run(ActionEscalate(), tracker_for(user_event("mensch bitte", "human_handoff")))
    reply_by = datetime.fromisoformat(messages[0]["custom"]["escalation"]["reply_by"])
    assert timedelta(hours=8) <= reply_by - before <= timedelta(hours=9)  # no support_hours: always there
    text = response_text("utter_escalated").format(ticket_id="T-1", reply_by=messages[0]["reply_by"])
    assert re.search(r"antwortet Ihnen in der Regel bis (heute|morgen) um \d+:00 Uhr\.", text)


def test_escalation_with_support_hours_broken_since_start_still_gives_the_ticket(tmp_path, monkeypatch):
    config = tmp_path / "support.yml"
    config.write_text('support_hours:\n  state: XY\n  mon: "09:00-17:00"\n', encoding="utf-8")
    monkeypatch.setenv("FAQBOT_SUPPORT_CONFIG", str(config))
    messages, events = run(ActionEscalate(), tracker_for(user_event("mensch bitte", "human_handoff")))
    assert [m["response"] for m in messages] == ["utter_escalated"]
    assert SlotSet("handed_off", True) in events


def test_escalation_payload_carries_the_customer_from_rest_metadata(monkeypatch):
    # A webhook is configured and no delivery worker runs in this process: the outbox row
    # is written all the same (the action server's worker sends it) and stays pending.
    store = actions.ticket_store()
    monkeypatch.setenv("FAQBOT_WEBHOOK_URL", "http://127.0.0.1:9/unused")
    event = user_event("mensch bitte", "human_handoff")
    event["metadata"] = {"customer": {"id": "K-1001", "email": "anna@example.org"}}
    messages, _ = run(ActionEscalate(), tracker_for(event))
    [delivery] = store.deliveries_for(messages[0]["custom"]["escalation"]["ticket_id"])
    assert delivery.target == "webhook" and delivery.status == "pending"
    assert delivery.payload["customer"] == {"id": "K-1001", "email": "anna@example.org"}


def test_a_line_break_in_channel_customer_data_never_reaches_the_ticket(monkeypatch):
    """The REST channel refuses such values; should one get into a tracker anyway, the
    ticket's contact (the mail's Reply-To) must not carry it."""
    store = actions.ticket_store()
    monkeypatch.setenv("FAQBOT_WEBHOOK_URL", "http://127.0.0.1:9/unused")
    event = user_event("mensch bitte", "human_handoff")
    event["metadata"] = {"customer": {"id": "K-1002", "email": "anna@example.org\r\nBcc: alle@example.org"}}
    messages, _ = run(ActionEscalate(), tracker_for(event))
    [delivery] = store.deliveries_for(messages[0]["custom"]["escalation"]["ticket_id"])
    assert "email" not in delivery.payload["customer"] and delivery.payload["customer"]["id"] == "K-1002"


# --- Contact details and handoff (actions/handoff.py) ---------------------------------


@pytest.mark.parametrize(
    "text, email",
    [
        ("max@beispiel.de", "max@beispiel.de"),
        ("Meine Adresse ist Max.Muster@Beispiel.DE.", "Max.Muster@beispiel.de"),
        ("<anna@example.org>", "anna@example.org"),
        ("max at beispiel punkt de", None),
        ("max@", None),
        ("max@beispiel", None),
        ("@beispiel.de", None),
        ("max@@beispiel.de", None),
        ("", None),
        (None, None),
    ],
)
def test_email_in_finds_and_validates_the_address(text, email):
    assert email_in(text) == email


async def test_the_form_asks_only_for_what_is_missing(ticket_db):
    form, dispatcher = ValidateEscalationForm(), CollectingDispatcher()
    slots = ["problem_description", "customer_email", "contact_confirmed"]
    asked_directly = tracker_for(user_event("Mitarbeiter bitte", "human_handoff"))
    assert await form.required_slots(slots, dispatcher, asked_directly, {}) == slots
    with_question = tracker_for(
        user_event("Wo ist Ihr Firmensitz?", "out_of_scope"), user_event("Mitarbeiter bitte", "human_handoff")
    )
    assert await form.required_slots(slots, dispatcher, with_question, {}) == slots[1:]
    known = user_event("Wo ist Ihr Firmensitz?", "out_of_scope")
    known["metadata"] = {"customer": {"email": "crm@beispiel.de"}}
    assert await form.required_slots(slots, dispatcher, tracker_for(known), {}) == []
    run(ActionEscalate(), with_question)  # an open ticket: nothing to ask, its number is repeated
    assert await form.required_slots(slots, dispatcher, with_question, {}) == []


def test_an_invalid_email_is_refused_with_a_hint_and_a_click_is_ignored():
    form, tracker = ValidateEscalationForm(), tracker_for(user_event("max@", "nlu_fallback"))
    dispatcher = CollectingDispatcher()
    assert form.validate_customer_email("max@", dispatcher, tracker, {}) == {"customer_email": None}
    assert [m["response"] for m in dispatcher.messages] == ["utter_invalid_email"]
    dispatcher = CollectingDispatcher()
    assert form.validate_customer_email("/human_handoff", dispatcher, tracker, {}) == {"customer_email": None}
    assert dispatcher.messages == []
    assert form.validate_customer_email("ich bin max@beispiel.de", dispatcher, tracker, {}) == {
        "customer_email": "max@beispiel.de"
    }


def test_a_clear_faq_question_instead_of_an_email_gets_its_answer():
    form, dispatcher = ValidateEscalationForm(), CollectingDispatcher()
    tracker = tracker_for(user_event(INVOICE.question, "faq_erhalte_rechnung", 0.95))
    assert form.validate_customer_email(INVOICE.question, dispatcher, tracker, {}) == {"customer_email": None}
    assert [m["text"] for m in dispatcher.messages] == [INVOICE.answer]
    unsure = tracker_for(user_event("rechnung?", "faq_erhalte_rechnung", 0.5))
    dispatcher = CollectingDispatcher()
    form.validate_customer_email("rechnung?", dispatcher, unsure, {})
    assert [m["response"] for m in dispatcher.messages] == ["utter_invalid_email"]


def test_the_confirmation_accepts_yes_no_or_a_corrected_address():
    form, tracker = ValidateEscalationForm(), tracker_for(user_event("ja", "affirm"))
    dispatcher = CollectingDispatcher()
    assert form.validate_contact_confirmed(True, dispatcher, tracker, {}) == {"contact_confirmed": True}
    assert form.validate_contact_confirmed(False, dispatcher, tracker, {}) == {
        "customer_email": None,
        "contact_confirmed": None,
    }
    assert form.validate_contact_confirmed("nein, richtig ist eva@beispiel.de", dispatcher, tracker, {}) == {
        "customer_email": "eva@beispiel.de",
        "contact_confirmed": None,
    }
    assert dispatcher.messages == []
    assert form.validate_contact_confirmed("vielleicht", dispatcher, tracker, {}) == {"contact_confirmed": None}
    assert [m["response"] for m in dispatcher.messages] == ["utter_answer_yes_or_no"]


def test_escalation_hands_the_conversation_off_with_the_described_problem():
    tracker = tracker_for(
        user_event("Mitarbeiter", "human_handoff"),
        slots={"problem_description": "Paket fehlt", "customer_email": "a@beispiel.de"},
    )
    messages, events = run(ActionEscalate(), tracker)
    ticket_id = messages[0]["custom"]["escalation"]["ticket_id"]
    assert SlotSet("handed_off", True) in events and SlotSet("ticket_id", ticket_id) in events
    ticket = actions.ticket_store().get(ticket_id)
    assert ticket.question == "Paket fehlt" and ticket.contact == {"id": "kunde-42", "email": "a@beispiel.de"}


def test_form_answers_are_not_taken_for_the_customers_question():
    events = [
        user_event("Wo ist Ihr Firmensitz?", "out_of_scope"),
        {"event": "active_loop", "name": "escalation_form"},
        user_event("a@beispiel.de", "nlu_fallback"),
        {"event": "active_loop", "name": None},
    ]
    assert actions.customer_question(tracker_for(*events))["text"] == "Wo ist Ihr Firmensitz?"


def test_a_message_after_the_handoff_is_added_to_the_ticket_and_queued(monkeypatch):
    store = actions.ticket_store()
    monkeypatch.setenv("FAQBOT_WEBHOOK_URL", "http://127.0.0.1:9/unused")
    ticket = store.create(
        sender_id="kunde-42",
        channel="rest",
        question="Paket fehlt",
        faq_guess=None,
        confidence=None,
        transcript=[],
        targets=["webhook"],
        contact={"id": "kunde-42"},
    )
    tracker = tracker_for(
        user_event("Sendungsnummer 123", "out_of_scope"), slots={"handed_off": True, "ticket_id": ticket.ticket_id}
    )
    dispatcher = CollectingDispatcher()
    result = ValidateHandoffForm().validate_handoff_message("Sendungsnummer 123", dispatcher, tracker, {})
    assert result == {"handoff_message": None}
    assert [m["response"] for m in dispatcher.messages] == ["utter_handoff_message_added"]
    assert store.get(ticket.ticket_id).transcript[-1]["text"] == "Sendungsnummer 123"
    message = [d for d in store.deliveries_for(ticket.ticket_id) if d.payload["event"] == "message"]
    assert [(d.target, d.payload["text"], d.payload["number"]) for d in message] == [
        ("webhook", "Sendungsnummer 123", 1)
    ]

    store.close(ticket.ticket_id)  # closed by the support team in the meantime
    dispatcher = CollectingDispatcher()
    result = ValidateHandoffForm().validate_handoff_message("noch etwas", dispatcher, tracker, {})
    assert result == {"handoff_message": None, "handed_off": False, "ticket_id": None}
    assert [m["response"] for m in dispatcher.messages] == ["utter_ticket_closed"]
    assert len(store.get(ticket.ticket_id).transcript) == 1


def test_back_to_bot_says_who_ended_the_handoff():
    handed_off = {"handed_off": True, "ticket_id": "T-1"}
    by_customer, _ = run(ActionBackToBot(), tracker_for(user_event("zurück zum bot", "back_to_bot"), slots=handed_off))
    by_support, events = run(
        ActionBackToBot(), tracker_for(user_event("EXTERNAL: back_to_bot", "back_to_bot"), slots=handed_off)
    )
    not_handed_off, _ = run(ActionBackToBot(), tracker_for(user_event("zurück zum bot", "back_to_bot")))
    assert [m["response"] for m in by_customer + by_support + not_handed_off] == [
        "utter_back_to_bot",
        "utter_ticket_closed",
        "utter_how_can_i_help",
    ]
    assert events == [SlotSet("handed_off", False), SlotSet("ticket_id", None)]


def test_the_handoff_is_explained_once_when_it_starts():
    starting = tracker_for(user_event("ja", "affirm"), {"event": "active_loop", "name": "handoff_form"})
    running = tracker_for(
        user_event("ja", "affirm"),
        {"event": "active_loop", "name": "handoff_form"},
        user_event("noch etwas", "out_of_scope"),
    )
    assert [m["response"] for m in run(ActionAskHandoffMessage(), starting)[0]] == ["utter_handoff_started"]
    assert run(ActionAskHandoffMessage(), running)[0] == []


def test_a_ticket_store_from_before_contact_details_is_upgraded(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE tickets (number INTEGER PRIMARY KEY, ticket_id VARCHAR(32), "
            "sender_id VARCHAR(255) NOT NULL, created_at VARCHAR(40) NOT NULL, "
            "channel VARCHAR(64), question TEXT, faq_guess VARCHAR(128), confidence FLOAT, "
            "transcript TEXT NOT NULL, status VARCHAR(16) NOT NULL)"
        )
        connection.execute(
            "INSERT INTO tickets VALUES (1, 'T-1', 'alt', '2026-01-01', 'rest', 'q', NULL, NULL, '[]', 'open')"
        )
    store = TicketStore(f"sqlite:///{path}")
    assert store.get("T-1").contact == {"id": "alt"}
    assert store.append_message("T-1", "Nachtrag") == 1
    assert store.close("T-1", "Erledigt").resolution == "Erledigt"  # the later columns, too


def transcript_request(*earlier: dict[str, Any]) -> Tracker:
    return tracker_for(*earlier, user_event("/request_transcript", "request_transcript", 1.0))


def test_a_transcript_needs_an_address_the_customer_gave(ticket_db, monkeypatch):
    monkeypatch.setenv("FAQBOT_SMTP_HOST", "127.0.0.1")
    messages, _ = run(ActionSendTranscript(), transcript_request())
    assert [m["response"] for m in messages] == ["utter_transcript_needs_email"]
    actions.ticket_store().create("kunde-42", "socketio", "Frage", None, None, [], contact={"id": "kunde-42"})
    messages, _ = run(ActionSendTranscript(), transcript_request())  # a ticket, but no address on it
    assert [m["response"] for m in messages] == ["utter_transcript_needs_email"]


def test_the_transcript_is_queued_as_the_customer_saw_the_conversation(ticket_db, monkeypatch):
    monkeypatch.setenv("FAQBOT_SMTP_HOST", "127.0.0.1")
    store = actions.ticket_store()
    ticket = store.create(
        "kunde-42", "socketio", "Frage", None, None, [], contact={"id": "kunde-42", "email": "kundin@beispiel.de"}
    )
    tracker = transcript_request(
        user_event("/greet", "greet", 1.0),  # the widget's greeting request: never typed
        {"event": "bot", "text": "Guten Tag!", "timestamp": 1764000001.0},
        user_event("Geld zurück?", "nlu_fallback", 0.4),
        {
            "event": "bot",
            "text": "Meinten Sie eine dieser Fragen?",
            "data": {
                "buttons": [{"title": "Wie ist die Rückerstattung?", "payload": "/faq_rueckerstattungsrichtlinie"}]
            },
            "timestamp": 1764000002.0,
        },
        user_event("/faq_rueckerstattungsrichtlinie", "faq_rueckerstattungsrichtlinie", 1.0),
        user_event("EXTERNAL: back_to_bot", "back_to_bot", 1.0),  # the support side's, not the customer's
    )
    messages, _ = run(ActionSendTranscript(), tracker)
    assert [(m["response"], m["email"]) for m in messages] == [("utter_transcript_sent", "kundin@beispiel.de")]
    [delivery] = store.deliveries_for(ticket.ticket_id)
    assert (delivery.target, delivery.payload["to"]) == ("customer", "kundin@beispiel.de")
    assert [(line["from"], line["text"]) for line in delivery.payload["transcript"]] == [
        ("bot", "Guten Tag!"),
        ("kunde", "Geld zurück?"),
        ("bot", "Meinten Sie eine dieser Fragen?"),
        ("kunde", "Wie ist die Rückerstattung?"),  # the button's title, not its payload
    ]
    for _ in range(MAX_TRANSCRIPTS - 1):
        run(ActionSendTranscript(), tracker)
    messages, _ = run(ActionSendTranscript(), tracker)
    assert [m["response"] for m in messages] == ["utter_transcript_limit"]
    assert len(store.deliveries_for(ticket.ticket_id)) == MAX_TRANSCRIPTS


def test_without_a_mail_server_or_store_the_customer_is_told(ticket_db, monkeypatch):
    monkeypatch.delenv("FAQBOT_SMTP_HOST", raising=False)
    monkeypatch.setenv("FAQBOT_SUPPORT_CONFIG", str(ticket_db.parent / "keine.yml"))
    contact = {"id": "kunde-42", "email": "kundin@beispiel.de"}
    actions.ticket_store().create("kunde-42", "socketio", "Frage", None, None, [], contact=contact)
    messages, _ = run(ActionSendTranscript(), transcript_request())
    assert [m["response"] for m in messages] == ["utter_transcript_unavailable"]

    class BrokenStore:
        def latest_ticket_for(self, sender_id):
            raise OSError("disk full")

    monkeypatch.setattr(actions, "_ticket_store", BrokenStore())
    messages, _ = run(ActionSendTranscript(), transcript_request())
    assert [m["response"] for m in messages] == ["utter_transcript_unavailable"]


def first_ticket_then_closed() -> list[dict[str, Any]]:
    """A conversation whose first ticket the support team closed."""
    return [
        user_event("Wo ist Ihr Firmensitz?", "out_of_scope", 0.9),
        user_event("Mitarbeiter bitte", "human_handoff", 1.0),
        {"event": "slot", "name": "ticket_id", "value": "T-20261127-00001", "timestamp": 1764000003.0},
        {"event": "bot", "text": "Ihre Ticketnummer lautet T-20261127-00001.", "timestamp": 1764000004.0},
        user_event("Danke, ich warte", "thank", 1.0),
        user_event("EXTERNAL: back_to_bot", "back_to_bot", 1.0),
        {"event": "slot", "name": "ticket_id", "value": None, "timestamp": 1764000006.0},
        {"event": "bot", "text": "Ihr Ticket wurde abgeschlossen.", "timestamp": 1764000007.0},
    ]


async def test_after_a_closed_ticket_the_next_one_asks_for_the_new_problem_and_confirms_the_address(ticket_db):
    form, dispatcher = ValidateEscalationForm(), CollectingDispatcher()
    slots = ["problem_description", "customer_email", "contact_confirmed"]
    again = tracker_for(*first_ticket_then_closed(), user_event("Mitarbeiter", "human_handoff", 1.0))
    assert await form.required_slots(slots, dispatcher, again, {}) == slots  # not the old question
    _, events = run(ActionEscalate(), again)
    assert SlotSet("contact_confirmed", None) in events  # so the stored address is confirmed next time


def test_a_later_ticket_has_only_its_own_question_and_transcript(ticket_db):
    tracker = tracker_for(
        *first_ticket_then_closed(),
        user_event("Meine Rechnung ist doppelt", "faq_erhalte_rechnung", 1.5e-10),
        user_event("Mitarbeiter", "human_handoff", 1.0),
    )
    messages, _ = run(ActionEscalate(), tracker)
    ticket = actions.ticket_store().get(messages[0]["custom"]["escalation"]["ticket_id"])
    assert ticket.question == "Meine Rechnung ist doppelt"
    assert [line["text"] for line in ticket.transcript] == [
        "Ihr Ticket wurde abgeschlossen.",
        "Meine Rechnung ist doppelt",
        "Mitarbeiter",
    ]
    assert (ticket.faq_guess, ticket.confidence) == (None, None)  # 1.5e-10 is no guess


def status_question(text: str = "Gibt es schon eine Antwort auf mein Ticket?") -> Tracker:
    return tracker_for(user_event(text, "ticket_status", 0.95))


def test_a_status_question_without_a_ticket_opens_none(ticket_db):
    messages, events = run(ActionTicketStatus(), status_question())
    assert [m["response"] for m in messages] == ["utter_no_ticket"] and events == []
    assert actions.ticket_store().latest_ticket_for("kunde-42") is None


def test_the_status_of_the_conversations_ticket_with_its_time_frame(ticket_db, monkeypatch):
    monkeypatch.delenv("FAQBOT_SUPPORT_CONFIG", raising=False)  # support.yml: 8 hours, always there
    store = actions.ticket_store()
    ticket = store.create("kunde-42", "rest", "Paket fehlt", None, None, [])
    for text in ("Gibt es schon eine Antwort auf mein Ticket?", f"Was ist der Stand von {ticket.ticket_id.lower()}?"):
        [message] = run(ActionTicketStatus(), status_question(text))[0]
        assert (message["response"], message["ticket_id"]) == ("utter_ticket_open", ticket.ticket_id)
        assert message["reply_by"].startswith("in der Regel bis ") and " um " in message["created"]
    store.close(ticket.ticket_id)
    [message] = run(ActionTicketStatus(), status_question())[0]
    assert message["response"] == "utter_ticket_done"
    assert store.latest_ticket_for("kunde-42").ticket_id == ticket.ticket_id  # and no new ticket


def test_the_status_gives_the_support_teams_latest_reply_and_the_resolution(ticket_db):
    store = actions.ticket_store()
    ticket = store.create("kunde-42", "rest", "Paket fehlt", None, None, [])
    store.add_reply(ticket.ticket_id, "Wir prüfen das mit dem Paketdienst.")
    store.add_reply(ticket.ticket_id, "Das Paket ist unterwegs, Sendungsnummer 123.")
    [message] = run(ActionTicketStatus(), status_question())[0]
    assert (message["response"], message["reply"], message["text"]) == (
        "utter_ticket_open_replied",
        "Das Paket ist unterwegs, Sendungsnummer 123.",
        None,  # the response's own text, not the reply alone
    )
    assert " um " in message["replied"] and message["replied"].endswith(" Uhr")
    store.close(ticket.ticket_id, "Zugestellt am Montag.")
    done, resolution = run(ActionTicketStatus(), status_question())[0]
    assert (done["response"], resolution["response"]) == ("utter_ticket_done", "utter_ticket_resolution")
    assert resolution["resolution"] == "Zugestellt am Montag."


def test_an_overdue_ticket_is_said_to_be_late(ticket_db, monkeypatch):
    monkeypatch.delenv("FAQBOT_SUPPORT_CONFIG", raising=False)  # support.yml: 8 hours
    ticket = actions.ticket_store().create("kunde-42", "rest", "Paket fehlt", None, None, [])
    two_days_ago = (datetime.now(timezone.utc) - timedelta(days=2)).isoformat()
    with sqlite3.connect(ticket_db) as connection:
        connection.execute("UPDATE tickets SET created_at = ? WHERE ticket_id = ?", (two_days_ago, ticket.ticket_id))
    [message] = run(ActionTicketStatus(), status_question())[0]
    assert (message["response"], message["ticket_id"]) == ("utter_ticket_open_overdue", ticket.ticket_id)


def test_another_conversations_ticket_reveals_nothing(ticket_db):
    other = actions.ticket_store().create("kunde-99", "rest", "Geheimes Anliegen", None, None, [])
    for number in (other.ticket_id, "T-20991231-99999"):  # someone else's, and one that does not exist
        [message] = run(ActionTicketStatus(), status_question(f"Stand von {number}?"))[0]
        assert (message["response"], message["ticket_id"]) == ("utter_ticket_not_found", number)


def test_a_status_question_with_the_store_down_is_answered(monkeypatch):
    class BrokenStore:
        def latest_ticket_for(self, sender_id):
            raise OSError("disk full")

    monkeypatch.setattr(actions, "_ticket_store", BrokenStore())
    [message] = run(ActionTicketStatus(), status_question())[0]
    assert message["response"] == "utter_ticket_status_failed"
