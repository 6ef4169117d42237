"""„War diese Antwort hilfreich?“: the widget's ratings of FAQ answers, from the signed token
the channel sends with an answer to the trainers' review queue (issue 17)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from test_review_queue import LISTEN, user

from faqbot.core.paths import PROJECT_DIR
from faqbot.core.review_store import ReviewStore, sender_hash
from faqbot.server.channels.socketio import (
    FEEDBACK_MAX_AGE_S,
    WidgetOutput,
    feedback_token,
    rated_answer,
)
from faqbot.server.review_broker import ReviewQueueBroker

SECRET = "s" * 32
CONVERSATION = "a" * 32


def test_a_token_names_the_answer_only_for_its_own_conversation():
    now = time.time()
    token = feedback_token(CONVERSATION, "erhalte_rechnung", SECRET, now)
    faq_id, answered_at = rated_answer(token, CONVERSATION, SECRET, now + 60)
    assert faq_id == "erhalte_rechnung" and abs(answered_at - now) < 0.001
    assert rated_answer(token, "b" * 32, SECRET, now) is None  # another customer's conversation
    assert rated_answer(token, CONVERSATION, "t" * 32, now) is None  # another server's secret
    forged = token.replace("erhalte_rechnung", "zahlungsdaten_aendern")
    assert rated_answer(forged, CONVERSATION, SECRET, now) is None
    assert rated_answer(token, CONVERSATION, SECRET, now + FEEDBACK_MAX_AGE_S + 1) is None  # too old
    for junk in (None, 42, "", "a.b", "a.b.c.d", "x.zwölf.abc", {"token": token}):
        assert rated_answer(junk, CONVERSATION, SECRET, now) is None


class Emits:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict, str]] = []

    async def emit(self, event: str, data: dict, room: str) -> None:
        self.sent.append((event, data, room))


def widget_messages(message: dict) -> list[dict]:
    sio = Emits()
    asyncio.run(WidgetOutput(sio, "bot_uttered", SECRET).send_response(CONVERSATION, message))
    assert {room for _, _, room in sio.sent} == {CONVERSATION}
    return [data for _, data, _ in sio.sent]


def test_an_faq_answer_reaches_the_widget_with_a_rating_token_under_its_last_part():
    custom = {"faq_id": "erhalte_rechnung", "category": "Rechnung", "confidence": 0.97}
    sent = widget_messages({"text": "Erster Absatz.\n\nZweiter Absatz.", "custom": custom})
    assert [data["text"] for data in sent] == ["Erster Absatz.", "Zweiter Absatz."]
    assert "feedback" not in sent[0]
    assert rated_answer(sent[1]["feedback"], CONVERSATION, SECRET)[0] == "erhalte_rechnung"
    assert all("custom" not in data and "faq_id" not in data for data in sent)  # REST integrations' payload


def test_other_messages_get_no_rating():
    ticket = {"escalation": {"ticket_id": "T-20261127-00001"}}
    assert widget_messages({"text": "Ihre Ticketnummer lautet T-20261127-00001.", "custom": ticket}) == [
        {"text": "Ihre Ticketnummer lautet T-20261127-00001."}
    ]
    clarify = {
        "text": "Meinten Sie eine dieser Fragen?",
        "buttons": [{"title": "Keine davon", "payload": "/out_of_scope"}],
        "custom": {"faq_id": "erhalte_rechnung"},
    }
    assert all("feedback" not in data for data in widget_messages(clarify))


def bot_answer(faq_id: str) -> dict:
    return {"event": "bot", "text": "Antwort", "data": {"custom": {"faq_id": faq_id, "confidence": 0.9}}}


def trainer(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "faqbot.tools.trainer", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=PROJECT_DIR,
        timeout=120,
    )


INVOICE_ANSWERED = [user("Rechnung bitte", "faq_erhalte_rechnung", 0.97), bot_answer("erhalte_rechnung"), LISTEN]


def conversation(broker: ReviewQueueBroker, sender: str, events: list[dict]) -> None:
    for event in events:
        broker.publish({"sender_id": sender, **event})


def folded(tmp_path: Path, events_by_sender: dict[str, list[dict]], ratings: list[tuple]) -> ReviewStore:
    broker = ReviewQueueBroker(tmp_path / "review.db")
    for sender, events in events_by_sender.items():
        conversation(broker, sender, events)
    for rating in ratings:
        assert broker.rate(*rating) is True
    asyncio.run(broker.close())
    return ReviewStore(tmp_path / "review.db")


def test_unhelpful_puts_the_question_in_front_of_the_trainers_and_every_rating_is_counted(tmp_path):
    answered = time.time()
    store = folded(
        tmp_path,
        {
            "kunde-1": [
                user("Wie komme ich an meine Rechnung, Konto anna@example.org?", "faq_erhalte_rechnung", 0.93),
                bot_answer("erhalte_rechnung"),
                LISTEN,
                user("Und wie ändere ich meine Zahlungsdaten?", "faq_zahlungsdaten_aendern", 0.96),
                bot_answer("zahlungsdaten_aendern"),
                LISTEN,
            ],
            "kunde-2": INVOICE_ANSWERED,
        },
        [
            ("kunde-1", "erhalte_rechnung", False, answered),  # the earlier answer, rated later
            ("kunde-1", "erhalte_rechnung", True, answered),  # a second click on the same answer: ignored
            ("kunde-1", "zahlungsdaten_aendern", True, answered + 1),
            ("kunde-2", "erhalte_rechnung", True, answered + 2),
        ],
    )
    [entry] = store.entries(status=None)
    assert (entry.kind, entry.intent, entry.outcome) == (
        "unhelpful",
        "faq_erhalte_rechnung",
        "unhelpful:erhalte_rechnung",
    )
    assert entry.text == "Wie komme ich an meine Rechnung, Konto [E-MAIL]?"  # masked like every entry
    assert entry.sender == sender_hash("kunde-1")
    assert store.feedback_counts() == {
        "erhalte_rechnung": {"helpful": 1, "unhelpful": 1},
        "zahlungsdaten_aendern": {"helpful": 1, "unhelpful": 0},
    }
    store.close()


def test_a_rated_answer_to_a_clarification_button_names_the_original_question(tmp_path):
    store = folded(
        tmp_path,
        {
            "kunde-3": [
                user("Geld zurück?", "nlu_fallback", 0.5),
                {"event": "bot", "text": "Meinten Sie …?", "data": {"buttons": [{"payload": "/faq_rueckerstattung"}]}},
                LISTEN,
                user("/faq_rueckerstattung", "faq_rueckerstattung", 1.0),
                bot_answer("rueckerstattung"),
                LISTEN,
            ]
        },
        [("kunde-3", "rueckerstattung", False, time.time())],
    )
    unhelpful = store.entries(status=None, kind="unhelpful")
    assert [(entry.text, entry.outcome) for entry in unhelpful] == [("Geld zurück?", "unhelpful:rueckerstattung")]
    store.close()


def test_ratings_are_exported_erased_and_expire_with_the_review_queue(tmp_path):
    now = time.time()
    store = folded(
        tmp_path,
        {"kunde-4": INVOICE_ANSWERED, "kunde-5": INVOICE_ANSWERED},
        [("kunde-4", "erhalte_rechnung", False, now), ("kunde-5", "erhalte_rechnung", True, now)],
    )
    entries, _ = store.export([sender_hash("kunde-4")])
    assert [(entry["kind"], entry.get("faq_id"), entry.get("helpful")) for entry in entries] == [
        ("unhelpful", None, None),
        ("rating", "erhalte_rechnung", False),
    ]
    store.erase([sender_hash("kunde-4")])
    assert store.feedback_counts() == {"erhalte_rechnung": {"helpful": 1, "unhelpful": 0}}
    store.purge(datetime.now(timezone.utc) + timedelta(seconds=1))
    assert store.feedback_counts() == {}
    store.close()


def test_trainers_see_the_ratings_worst_first(tmp_path):
    now = time.time()
    store = folded(
        tmp_path,
        {"kunde-6": INVOICE_ANSWERED, "kunde-7": INVOICE_ANSWERED},
        [
            ("kunde-6", "erhalte_rechnung", False, now),
            ("kunde-7", "erhalte_rechnung", False, now),
            ("kunde-7", "zahlungsdaten_aendern", True, now),
        ],
    )
    store.close()
    result = trainer("bewertungen", "--datei", str(tmp_path / "review.db"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "   2 nicht hilfreich ·    0 hilfreich · „Wie erhalte ich eine Rechnung?“" in lines[1]
    assert "   0 nicht hilfreich ·    1 hilfreich" in lines[2]
    assert "review --art unhelpful" in lines[-1]


def test_the_review_walks_through_unhelpful_answers(tmp_path):
    store = folded(
        tmp_path,
        {"kunde-8": INVOICE_ANSWERED},
        [("kunde-8", "erhalte_rechnung", False, time.time())],
    )
    store.close()
    result = trainer("review", "--art", "unhelpful", "--datei", str(tmp_path / "review.db"), stdin="q\n")
    assert "Antwort als nicht hilfreich bewertet" in result.stdout
    assert "fand die Antwort auf „Wie erhalte ich eine Rechnung?“ nicht hilfreich" in result.stdout
