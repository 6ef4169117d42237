"""The review queue records what the bot missed, from real conversations over REST."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import sqlite3
import time
from collections.abc import Callable

import pytest

from faqbot.core.paths import PROJECT_DIR
from faqbot.core.phrasings import read_examples
from faqbot.core.review_store import Entry, ReviewStore, sender_hash
from faqbot.server.review_broker import ReviewQueueBroker, ReviewWriter, judged_event
from tests.helpers import buttons, customs


@pytest.fixture(scope="module")
def queue(bot):
    store = ReviewStore(bot.servers.var_dir / "review.db")
    yield store
    store.close()


def recorded(queue: ReviewStore, sender: str) -> list[Entry]:
    return [entry for entry in queue.entries(status=None) if entry.sender == sender_hash(sender)]


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """The server writes the queue in a background thread: give it a moment."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def only(queue: ReviewStore, sender: str, with_outcome: bool = False) -> Entry:
    wait_for(lambda: len(entries := recorded(queue, sender)) == 1 and (entries[0].outcome or not with_outcome))
    entries = recorded(queue, sender)
    assert len(entries) == 1, [(entry.text, entry.kind) for entry in entries]
    return entries[0]


def user(text: str, intent: str, confidence: float) -> dict:
    """A user event as Rasa publishes it (without the sender_id)."""
    return {
        "event": "user",
        "text": text,
        "parse_data": {
            "intent": {"name": intent, "confidence": confidence},
            "intent_ranking": [{"name": intent, "confidence": confidence}],
        },
    }


LISTEN = {"event": "action", "name": "action_listen"}


def feed(writer: ReviewWriter, sender: str, events: list[dict]) -> None:
    """Events of one conversation as the broker hands them to its writer."""
    for event in events:
        judged = judged_event({"sender_id": sender, **event})
        if judged:
            writer.append(*judged)


def fallback_turn(text: str) -> list[dict]:
    """A question the bot could not answer: one entry of kind fallback."""
    return [user(text, "nlu_fallback", 0.4), {"event": "action", "name": "action_handle_fallback"}, LISTEN]


THANKS = [user("danke", "thank", 0.95), LISTEN]


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
    entry = only(queue, "rq-oos", with_outcome=True)
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
    # One word that fits several FAQ questions: the bot asks „Meinten Sie …?“.
    replies = bot.send("rq-clarify", "daten")
    offered = [button["payload"] for button in buttons(replies) if button["payload"].startswith("/faq_")]
    assert offered, replies
    bot.send("rq-clarify", offered[0])
    entry = only(queue, "rq-clarify", with_outcome=True)  # the button press itself is not a message to review
    assert (entry.text, entry.kind, entry.outcome) == (
        "daten",
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
    entry = only(queue, "rq-escalate", with_outcome=True)
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
    replies = bot.send("rq-low", "vertrag")  # one word: answered, but not with certainty
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
    broker = ReviewQueueBroker(tmp_path / "review.db")
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
        broker.publish({"sender_id": "form-1", **event})
    asyncio.run(broker.close())
    store = ReviewStore(tmp_path / "review.db")
    entries = store.entries(status=None)
    assert [(entry.text, entry.kind, entry.outcome) for entry in entries] == [
        ("Ich will mit einem Menschen reden", "escalation", "escalated")
    ]
    store.close()


def test_sender_hashes_are_keyed_with_the_secret_from_the_environment(monkeypatch):
    """Hashing a candidate conversation id without the secret finds no customer's rows."""
    monkeypatch.setenv("FAQBOT_HASH_SECRET", "a" * 40)
    keyed = sender_hash("kunde-42")
    assert keyed == hmac.new(b"a" * 40, b"kunde-42", "sha256").hexdigest()[:16]
    assert keyed != hashlib.sha256(b"kunde-42").hexdigest()[:16]
    assert sender_hash("kunde-42") == keyed and sender_hash("kunde-43") != keyed  # still groups
    monkeypatch.setenv("FAQBOT_HASH_SECRET", "b" * 40)  # read at every call
    assert sender_hash("kunde-42") != keyed
    monkeypatch.setenv("FAQBOT_HASH_SECRET", "zu kurz")
    with pytest.raises(SystemExit, match="FAQBOT_HASH_SECRET ist zu kurz"):
        sender_hash("kunde-42")


def test_stored_text_is_masked_without_control_characters_and_cut(tmp_path):
    store = ReviewStore(tmp_path / "review.db")
    entry_id = store.record("Rechnung\x1b[31m an anna@example.org " + "x" * 5000, "s", "fallback")
    text = store.entries()[0].text
    assert store.entries()[0].id == entry_id
    assert text.startswith("Rechnung [31m an [E-MAIL] x") and len(text) == 2000
    store.close()


# Three conversations, each recorded and then given an outcome by the next turn.
LOCKED_CONVERSATIONS = {
    "lock-oos": [
        user("Wie wird das Wetter morgen in Kiel?", "out_of_scope", 0.91),
        {"event": "action", "name": "action_handle_fallback"},
        {"event": "bot", "text": "Dazu kann ich nichts sagen.", "data": {"buttons": [{"payload": "/deny"}]}},
        LISTEN,
        user("Nein, danke", "deny", 0.95),
        LISTEN,
    ],
    "lock-clarify": [
        user("geht das offline", "faq_offline", 0.52),
        {"event": "bot", "text": "Meinten Sie …?", "data": {"buttons": [{"payload": "/faq_offline"}]}},
        LISTEN,
        user("/faq_offline", "faq_offline", 1.0),
        {"event": "bot", "text": "Ja.", "data": {"custom": {"faq_id": "offline"}}},
        LISTEN,
    ],
    "lock-low": [
        user("rechnung zahlung", "faq_rechnung", 0.7),
        {"event": "bot", "text": "So geht es.", "data": {"custom": {"faq_id": "rechnung"}}},
        LISTEN,
        user("Ich möchte mit einem Mitarbeiter sprechen", "human_handoff", 0.97),
        {"event": "bot", "text": "Ticket T-1", "data": {"custom": {"escalation": {"ticket_id": "T-1"}}}},
        LISTEN,
    ],
}
LOCKED_EXPECTED = [
    ("Wie wird das Wetter morgen in Kiel?", "out_of_scope", "declined"),
    ("geht das offline", "clarification", "faq:offline"),
    ("rechnung zahlung", "low_confidence", "escalated"),
]


def lock(path) -> sqlite3.Connection:
    """What a trainer's write does to the server: hold the database's write lock."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    return connection


def test_a_locked_database_neither_blocks_publish_nor_loses_entries(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="faqbot.server.review_broker")
    path = tmp_path / "review.db"
    ReviewStore(path).close()  # the database exists, as on a running server
    broker = ReviewQueueBroker(path)
    locker = lock(path)
    try:
        for sender, events in LOCKED_CONVERSATIONS.items():
            for event in events:
                started = time.monotonic()
                broker.publish({"sender_id": sender, **event})
                assert time.monotonic() - started < 0.05, event
        time.sleep(1.5)  # several busy timeouts: the writer retries meanwhile
        assert locker.execute("SELECT count(*) FROM review").fetchone()[0] == 0
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    store = ReviewStore(path)

    def written() -> list[tuple]:
        return [(entry.text, entry.kind, entry.outcome) for entry in store.entries(status=None)]

    assert wait_for(lambda: written() == LOCKED_EXPECTED), written()  # recovered without close()
    asyncio.run(broker.close())
    store.close()
    logged = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert [level for level, _ in logged if level == "WARNING"] == ["WARNING"], logged  # once per outage
    assert any(level == "INFO" and "wieder beschreibbar" in message for level, message in logged), logged
    assert not [m for _, m in logged for text, _, _ in LOCKED_EXPECTED if text in m]  # counts, never texts


def test_close_writes_what_waits_and_gives_up_on_a_database_that_stays_locked(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="faqbot.server.review_broker")
    writer = ReviewWriter(tmp_path / "review.db")
    for number in range(3):
        feed(writer, f"s{number}", fallback_turn(f"Frage {number}") + THANKS)
    writer.close()
    store = ReviewStore(tmp_path / "review.db")
    assert [(entry.text, entry.outcome) for entry in store.entries()] == [(f"Frage {n}", "thanks") for n in range(3)]

    writer = ReviewWriter(tmp_path / "review.db", busy_timeout_s=0.1)
    locker = lock(tmp_path / "review.db")
    try:
        for number in range(3):
            feed(writer, f"t{number}", fallback_turn(f"Später {number}"))  # three events each
        started = time.monotonic()
        writer.close(timeout_s=0.5)
        assert time.monotonic() - started < 2.5
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert ("ERROR", "Review-Warteschlange: Datenbank gesperrt, 9 Schreibvorgänge nicht gespeichert") in [
        (record.levelname, record.getMessage()) for record in caplog.records
    ]
    assert len(store.entries()) == 3
    store.close()


def test_a_full_queue_drops_new_writes_and_logs_how_many(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="faqbot.server.review_broker")
    ReviewStore(tmp_path / "review.db").close()
    writer = ReviewWriter(tmp_path / "review.db", max_pending=2)
    locker = lock(tmp_path / "review.db")
    try:
        feed(writer, "s0", [user("Frage 0", "nlu_fallback", 0.4)])
        time.sleep(0.3)  # the writer holds it, waiting for the lock
        for number in range(1, 6):  # two can wait, three are dropped
            feed(writer, f"s{number}", [user(f"Frage {number}", "nlu_fallback", 0.4)])
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    time.sleep(1.5)  # the writer catches up
    feed(writer, "s6", [user("Frage 6", "nlu_fallback", 0.4)])  # room again: the loss is reported
    writer.close()
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert errors == [
        "Review-Warteschlange voll (2 Schreibvorgänge): neue werden verworfen",
        "Review-Warteschlange: 3 Schreibvorgänge verworfen (Warteschlange voll)",
    ]
    assert writer.written == 4


def test_a_locked_review_db_neither_delays_replies_nor_loses_entries(bot, queue):
    """A trainer's write lock on the servers' review.db (~5 s): the customers notice nothing."""
    bot.send("rq-lock-warmup", "Hallo")
    locker = lock(bot.servers.var_dir / "review.db")
    locked_at = time.monotonic()
    try:
        for sender, message in [
            ("rq-lock-oos", "Wie wird das Wetter morgen in Berlin?"),
            ("rq-lock-oos", "Nein, danke"),
            ("rq-lock-fallback", "Mein Drucker macht seltsame Geräusche beim Import"),
        ]:
            started = time.monotonic()
            bot.send(sender, message)
            assert time.monotonic() - started < 2, message
        assert recorded(queue, "rq-lock-oos") == []  # still waiting in the server
        time.sleep(max(0.0, 5 - (time.monotonic() - locked_at)))
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    entry = only(queue, "rq-lock-oos", with_outcome=True)
    assert (entry.text, entry.kind, entry.outcome) == (
        "Wie wird das Wetter morgen in Berlin?",
        "out_of_scope",
        "declined",
    )
    assert only(queue, "rq-lock-fallback").text == "Mein Drucker macht seltsame Geräusche beim Import"


# Issue 16: the costly misses, confident answers that were wrong, reach the queue too.
def answer(faq_id: str) -> dict:
    return {"event": "bot", "text": "Die Antwort.", "data": {"custom": {"faq_id": faq_id}}}


def asked(text: str, faq_id: str, confidence: float = 0.96) -> list[dict]:
    """A question answered with confidence."""
    return [user(text, f"faq_{faq_id}", confidence), answer(faq_id), LISTEN]


def folded(tmp_path, events: list[dict], sender: str = "teuer-1", by_priority: bool = False) -> list[tuple]:
    """The entries a conversation's events give: (text, kind, outcome), as stored or in the trainers' order."""
    broker = ReviewQueueBroker(tmp_path / "review.db")
    for event in events:
        broker.publish({"sender_id": sender, **event})
    asyncio.run(broker.close())
    store = ReviewStore(tmp_path / "review.db")
    try:
        return [(entry.text, entry.kind, entry.outcome) for entry in store.entries(None, by_priority=by_priority)]
    finally:
        store.close()


@pytest.fixture
def no_sample(monkeypatch):
    monkeypatch.setenv("FAQBOT_REVIEW_SAMPLE", "0")


def test_a_confident_answer_followed_by_no_is_recorded(tmp_path, no_sample):
    events = [*asked("schickt ihr die rechnung auch per brief", "erhalte_rechnung"), user("nein", "deny", 0.99), LISTEN]
    assert folded(tmp_path, events) == [("schickt ihr die rechnung auch per brief", "contradicted", "said_no")]


def test_a_confident_answer_asked_again_differently_is_recorded(tmp_path, no_sample):
    events = [
        *asked("schickt ihr die rechnung auch per brief", "erhalte_rechnung"),
        *asked("ich will die rechnung per post, nicht digital", "erhalte_rechnung"),  # the same answer again
        *asked("Wie kann ich bezahlen?", "zahlungsmethoden_akzeptieren"),  # another question: nothing
    ]
    assert folded(tmp_path, events) == [("schickt ihr die rechnung auch per brief", "contradicted", "rephrased")]


def test_a_confident_answer_and_then_a_request_for_a_person_is_recorded(tmp_path, no_sample):
    events = [
        *asked("wo finde ich meine rechnung", "erhalte_rechnung"),
        user("ich will einen mitarbeiter", "human_handoff", 0.98),
        {"event": "active_loop", "name": "escalation_form"},
        LISTEN,
    ]
    assert folded(tmp_path, events) == [("wo finde ich meine rechnung", "escalation", "asked_for_person")]
    escalated = [
        *events,
        user("anna@example.org", "nlu_fallback", 0.5),
        {"event": "active_loop", "name": None},
        {"event": "bot", "text": "Ticket T-1", "data": {"custom": {"escalation": {"ticket_id": "T-1"}}}},
        LISTEN,
    ]
    assert folded(tmp_path / "2", escalated) == [("wo finde ich meine rechnung", "escalation", "escalated")]


def test_small_talk_worded_like_a_question_is_recorded_and_real_small_talk_is_not(tmp_path, no_sample):
    events = [
        user("gibts was günstiger für gründer", "greet", 0.93),
        LISTEN,
        user("komm nich mehr rein, pw vergessen", "deny", 0.81),
        LISTEN,
        user("Vielen Dank für die schnelle Hilfe", "thank", 0.99),
        LISTEN,
        user("Guten Tag!", "greet", 0.99),
        LISTEN,
        *fallback_turn("Mein Drucker macht Geräusche"),
        user("nein, das möchte ich lieber nicht weitergeben", "deny", 0.9),  # an answer to the bot's offer
        LISTEN,
    ]
    assert folded(tmp_path, events) == [
        ("gibts was günstiger für gründer", "small_talk", None),
        ("komm nich mehr rein, pw vergessen", "small_talk", None),
        ("Mein Drucker macht Geräusche", "fallback", "declined"),
    ]


def test_a_sample_of_confident_answers_is_recorded_the_same_way_for_the_same_text(tmp_path, monkeypatch):
    monkeypatch.setenv("FAQBOT_REVIEW_SAMPLE", "1")
    asked_once = asked("Welche Bezahlarten gibt es bei euch eigentlich", "zahlungsmethoden_akzeptieren")
    assert folded(tmp_path, asked_once) == [("Welche Bezahlarten gibt es bei euch eigentlich", "sample", None)]
    monkeypatch.setenv("FAQBOT_REVIEW_SAMPLE", "0.5")  # a hash of the text decides, not chance
    texts = [f"Frage Nummer {number} zur Zahlung" for number in range(40)]
    events = [event for text in texts for event in [*asked(text, "zahlungsmethoden_akzeptieren"), *THANKS]]
    first = {entry[0] for entry in folded(tmp_path / "a", events)}
    assert first == {entry[0] for entry in folded(tmp_path / "b", events, sender="teuer-2")}
    assert 8 <= len(first) <= 32


def test_trainers_see_the_costly_misses_first(tmp_path, monkeypatch):
    monkeypatch.setenv("FAQBOT_REVIEW_SAMPLE", "1")
    events = [
        *asked("Welche Bezahlarten gibt es bei euch eigentlich", "zahlungsmethoden_akzeptieren"),  # sample
        *fallback_turn("Mein Drucker macht Geräusche"),  # fallback
        *asked("schickt ihr die rechnung auch per brief", "erhalte_rechnung"),  # sample, then contradicted
        user("nein", "deny", 0.99),
        LISTEN,
    ]
    assert [kind for _, kind, _ in folded(tmp_path, events, by_priority=True)] == [
        "contradicted",
        "fallback",
        "sample",
        "sample",
    ]


def test_an_out_of_scope_question_the_trainers_already_decided_is_not_queued_again(tmp_path, no_sample):
    refused = [{"event": "action", "name": "action_handle_fallback"}, LISTEN]
    events = [
        user("Wie wird das Wetter morgen?", "out_of_scope", 0.97),  # an out_of_scope example of the training data
        *refused,
        user("Wie wird das Wetter morgen in Kiel?", "out_of_scope", 0.91),  # not one: for the trainers
        *refused,
    ]
    assert folded(tmp_path, events) == [("Wie wird das Wetter morgen in Kiel?", "out_of_scope", None)]


def test_a_new_faq_answered_by_the_dialogues_fallback_counts_as_an_answer(tmp_path, no_sample):
    """Trained in the inbox, not yet in the running domain: action_handle_fallback answers it."""
    new_faq = [
        user("habt ihr einen dunklen modus", "faq_dunkle_ansicht", 0.93),
        {"event": "action", "name": "action_handle_fallback"},
        answer("dunkle_ansicht"),
        LISTEN,
    ]
    assert folded(tmp_path, new_faq) == []
    assert folded(tmp_path, [*new_faq, user("nein", "deny", 0.99), LISTEN], "teuer-2") == [
        ("habt ihr einen dunklen modus", "contradicted", "said_no")
    ]


def test_a_repeat_answered_as_the_trainers_decided_is_not_queued_again(tmp_path, monkeypatch):
    monkeypatch.setenv("FAQBOT_REVIEW_SAMPLE", "1")  # every confident answer would be sampled
    example = read_examples(PROJECT_DIR / "data" / "nlu" / "faq.yml")["faq_erhalte_rechnung"][1]
    conversations = [
        asked(example.upper(), "erhalte_rechnung"),  # a training example of this FAQ: decided
        asked(example, "erhalte_rechnung", 0.5),  # the same at low confidence
        asked(example, "zahlungsmethoden_akzeptieren", 0.5),  # answered otherwise: for the trainers
        asked("wie bekomme ich die rechnung als papier", "erhalte_rechnung"),  # not an example
    ]
    for number, events in enumerate(conversations):
        queued = folded(tmp_path, events, f"wieder-{number}")
    assert queued == [(example, "low_confidence", None), ("wie bekomme ich die rechnung als papier", "sample", None)]
