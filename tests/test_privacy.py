"""faqbot.core.privacy: find, export and erase one customer's data; retention (README, "Datenschutz").

Real stores: Rasa's conversation table written by the project's tracker store (SQLite),
the ticket store, the review queue.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from conftest import bot_servers, running
from helpers import customs, texts
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from test_rest_conversations import response_text

from faqbot.core import encryption, phrasings, privacy
from faqbot.core.paths import PROJECT_DIR
from faqbot.core.review_store import ReviewStore, sender_hash
from faqbot.core.tickets import TicketStore
from faqbot.server.tracker_store import LeanSQLTrackerStore
from faqbot.tools import datenschutz

DOMAIN = Domain.load(PROJECT_DIR / "domain.yml")
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
ANNA = {
    "conversation": "anna-1",
    "customer_id": "K-4711",
    "email": "anna.muster@example.org",
    "question": "Meine Karte 4111 1111 1111 1111 wurde doppelt belastet, Rückruf unter 0171 2345678",
}
BERT = {
    "conversation": "bert-1",
    "customer_id": "K-0815",
    "email": "bert@example.org",
    "question": "Wo finde ich meine Rechnung vom Sommerfest?",
}


def conversation(customer: dict, at: datetime, email_from: str) -> list:
    start = at.timestamp()
    metadata = {"customer": {"id": customer["customer_id"]}} if email_from == "form" else {}
    if email_from == "integration":
        metadata = {"customer": {"id": customer["customer_id"], "email": customer["email"]}}
    events = [
        ActionExecuted("action_listen", timestamp=start),
        UserUttered(customer["question"], intent={"name": "human_handoff"}, metadata=metadata, timestamp=start + 1),
        BotUttered("Unter welcher E-Mail-Adresse …?", timestamp=start + 2),
    ]
    if email_from == "form":
        events += [
            UserUttered(customer["email"], intent={"name": "inform"}, timestamp=start + 3),
            SlotSet("customer_email", customer["email"], timestamp=start + 4),
        ]
    return events


@pytest.fixture
def stores(tmp_path: Path) -> privacy.DataStores:
    tracker_db, ticket_db, review_db = tmp_path / "tracker.db", tmp_path / "tickets.db", tmp_path / "review.db"
    tracker_store = LeanSQLTrackerStore(domain=DOMAIN, dialect="sqlite", db=str(tracker_db))
    ticket_store = TicketStore(f"sqlite:///{ticket_db}")
    review = ReviewStore(review_db)
    for customer, email_from in ((ANNA, "form"), (BERT, "integration")):
        events = conversation(customer, NOW - timedelta(days=1), email_from)
        asyncio.run(
            tracker_store.save(DialogueStateTracker.from_events(customer["conversation"], events, DOMAIN.slots))
        )
        ticket_store.create(
            customer["conversation"],
            "rest",
            customer["question"],
            None,
            None,
            [{"from": "kunde", "text": customer["question"], "time": NOW.isoformat()}],
            targets=["webhook"],
            contact={"id": customer["conversation"], "email": customer["email"]},
        )
        review.record(customer["question"], sender_hash(customer["conversation"]), "escalation")
    review.close()
    return privacy.DataStores(tracker_store.engine, ticket_store, review_db)


def database_bytes(stores: privacy.DataStores) -> bytes:
    files = [Path(stores.tracker.url.database), Path(stores.tickets.engine.url.database), stores.review]
    files += [file.with_name(file.name + suffix) for file in files for suffix in ("-wal", "-journal")]
    return b"".join(file.read_bytes() for file in files if file.exists())


@pytest.mark.parametrize(
    "lookup, value",
    [("conversation_id", "anna-1"), ("customer_id", "k-4711"), ("email", "Anna.Muster@Example.org")],
)
def test_a_request_finds_the_customers_conversations(stores, lookup, value):
    assert privacy.find(stores, lookup, value).conversation_ids == {"anna-1"}


def test_the_export_holds_everything_stored_about_the_customer(stores):
    data = privacy.export(stores, privacy.find(stores, "email", ANNA["email"]))
    json.dumps(data)  # JSON as it is handed out
    assert list(data["conversations"]) == ["anna-1"]
    texts = [event.get("text") for event in data["conversations"]["anna-1"]]
    assert ANNA["question"] in texts and ANNA["email"] in texts
    [ticket] = data["tickets"]
    assert ticket["contact"]["email"] == ANNA["email"] and ticket["transcript"][0]["text"] == ANNA["question"]
    assert [delivery["target"] for delivery in ticket["deliveries"]] == ["webhook"]
    assert len(data["review_queue"]) == 1 and "sender" not in data["review_queue"][0]
    assert BERT["email"] not in json.dumps(data) and BERT["question"] not in json.dumps(data)


def stored_values(stores: privacy.DataStores, conversation_id: str) -> list[str]:
    """The values stored about one conversation as they are in the files (encrypted)."""
    with sqlite3.connect(stores.tracker.url.database) as connection:
        values = [
            data for (data,) in connection.execute("SELECT data FROM events WHERE sender_id = ?", (conversation_id,))
        ]
    with sqlite3.connect(stores.tickets.engine.url.database) as connection:
        for row in connection.execute(
            "SELECT question, transcript, contact, payload FROM tickets JOIN deliveries USING (ticket_id) "
            "WHERE sender_id = ?",
            (conversation_id,),
        ):
            values += row
    with sqlite3.connect(stores.review) as connection:
        values += [
            text
            for (text,) in connection.execute(
                "SELECT text FROM review WHERE sender = ?", (sender_hash(conversation_id),)
            )
        ]
    return values


def test_erasure_leaves_nothing_of_the_customer_in_the_database_files(stores):
    before = database_bytes(stores)
    stored = stored_values(stores, "anna-1")
    assert len(stored) == 5 + 4 + 1 and all(value.encode() in before for value in stored)  # the test can fail
    result = privacy.erase(stores, privacy.find(stores, "email", ANNA["email"]), actor="cli:test")
    assert result["training_phrasings_left"] == []
    assert result["counts"] == {
        "conversations": 1,
        "conversation_events": 5,
        "tickets": 1,
        "deliveries": 1,
        "review_queue": 1,
        "training_phrasings": 0,
    }
    after = database_bytes(stores)
    for trace in (ANNA["email"], "4111 1111 1111 1111", "0171 2345678", "doppelt belastet", *stored):
        assert trace.encode() not in after, trace
    # The other customer is untouched.
    assert privacy.find(stores, "email", BERT["email"]).conversation_ids == {"bert-1"}
    data = privacy.export(stores, privacy.Subject("conversation_id", {"bert-1"}))
    assert len(data["conversations"]["bert-1"]) == 3 and len(data["tickets"]) == 1 and len(data["review_queue"]) == 1
    # Logged: who, by what, how many; never what.
    with stores.tickets.engine.connect() as connection:
        [entry] = connection.execute(sa.select(privacy.erasure_log)).all()
    assert (entry.actor, entry.lookup, json.loads(entry.counts)) == ("cli:test", "email", result["counts"])
    assert ANNA["email"] not in str(tuple(entry))


def test_retention_deletes_what_is_older_than_its_period(stores):
    days = privacy.retention_days({"retention": {"conversations": 30, "tickets": 30, "review_queue": 30}})
    assert privacy.purge_expired(stores, days, now=NOW) == {
        "conversation_events": 0,
        "tickets": 0,
        "deliveries": 0,
        "review_queue": 0,
    }
    stores.tickets.close(stores.tickets.open_ticket_for("anna-1").ticket_id)
    later = NOW + timedelta(days=31)
    counts = privacy.purge_expired(stores, days, now=later)
    # Both conversations and review entries are past 30 days; only the closed ticket goes.
    assert counts == {"conversation_events": 8, "tickets": 1, "deliveries": 1, "review_queue": 2}
    assert stores.tickets.open_ticket_for("bert-1") is not None
    with sqlite3.connect(stores.tracker.url.database) as connection:
        assert connection.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)


def test_a_conversation_with_a_recent_message_is_kept_whole(stores):
    tracker_store = LeanSQLTrackerStore(domain=DOMAIN, dialect="sqlite", db=stores.tracker.url.database)
    tracker = asyncio.run(tracker_store.retrieve("anna-1"))
    tracker.update(UserUttered("Noch eine Frage", timestamp=(NOW + timedelta(days=29)).timestamp()))
    asyncio.run(tracker_store.save(tracker))
    days = privacy.retention_days({"retention": {"conversations": 30}})
    counts = privacy.purge_expired(stores, days, now=NOW + timedelta(days=31))
    assert counts["conversation_events"] == 3  # Bert's; all six of Anna's stay
    assert privacy.find(stores, "email", ANNA["email"]).conversation_ids == {"anna-1"}


def test_erasure_removes_the_phrasings_taken_from_the_customers_messages(stores, tmp_path):
    project = tmp_path / "projekt"
    shutil.copytree(PROJECT_DIR / "data", project / "data")
    added = phrasings.add_phrasing_as_written("erhalte_rechnung", "ich krieg meine rechnung nie per mail", project)
    review = ReviewStore(stores.review)
    [entry] = [entry for entry in review.entries(status=None) if entry.sender == sender_hash("anna-1")]
    review.set_added_phrasing(entry.id, added.intent, added.phrasing)
    review.close()

    def examples():
        return [
            text
            for path in phrasings.nlu_files(project)
            for texts in phrasings.read_examples(path).values()
            for text in texts
        ]

    assert added.phrasing in examples()
    exported = privacy.export(stores, privacy.find(stores, "conversation_id", "anna-1"))
    assert exported["training_phrasings"] == [{"intent": added.intent, "text": added.phrasing}]
    result = privacy.erase(stores, privacy.find(stores, "conversation_id", "anna-1"), "cli:test", project=project)
    assert result["counts"]["training_phrasings"] == 1 and result["training_phrasings_left"] == []
    assert added.phrasing not in examples()


def test_the_command_line_exports_erases_and_lists_the_erasures(stores, tmp_path, monkeypatch, capsys):
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text(
        f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: {stores.tracker.url.database}\n"
        f"event_broker:\n  type: faqbot.server.review_broker.ReviewQueueBroker\n  db: {stores.review}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("FAQBOT_TICKET_DB", stores.tickets.engine.url.database)
    monkeypatch.delenv("FAQBOT_TICKET_DB_URL", raising=False)
    monkeypatch.delenv("FAQBOT_REVIEW_DB", raising=False)
    run = lambda *args: datenschutz.main(["--endpoints", str(endpoints), "--projekt", str(tmp_path), *args])  # noqa: E731
    export = tmp_path / "auskunft.json"
    assert run("auskunft", "--kunde", ANNA["customer_id"], "--datei", str(export)) == 0
    assert export.stat().st_mode & 0o777 == 0o600
    assert list(json.loads(export.read_text(encoding="utf-8"))["conversations"]) == ["anna-1"]
    assert run("loeschen", "--email", ANNA["email"]) == 2  # not a terminal: only with --ja
    assert privacy.find(stores, "email", ANNA["email"]).conversation_ids == {"anna-1"}
    assert run("loeschen", "--email", ANNA["email"], "--ja") == 0
    assert "Tickets: 1" in capsys.readouterr().out
    assert privacy.find(stores, "email", ANNA["email"]).conversation_ids == set()
    assert run("protokoll") == 0
    listed = capsys.readouterr().out
    assert "cli:" in listed and "email" in listed and ANNA["email"] not in listed


@pytest.mark.parametrize("retention", [{"conversations": 0}, {"tickets": "90"}, {"gespraeche": 30}])
def test_bad_retention_settings_are_refused(retention):
    with pytest.raises(privacy.RetentionError):
        privacy.retention_days({"retention": retention})


def test_the_defaults_are_documented():
    readme = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    for kind, days in privacy.retention_days({}).items():
        assert f"`{kind}`" in readme and f"{days} days" in readme


# --- through the support API of the real servers ---

SUPPORT_TOKEN = "support-token-for-the-privacy-tests-0123456789"
MARKER = "Zitronenfalter"  # a word only Anna's messages contain


def rest(servers, sender: str, message: str) -> list[dict]:
    reply = requests.post(
        f"{servers.url}/webhooks/rest/webhook",
        json={"sender": sender, "message": message},
        headers={"Authorization": f"Bearer {servers.rest_token}"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def escalate(servers, sender: str, email: str) -> None:
    replies = rest(servers, sender, "Ich möchte bitte mit einem Mitarbeiter sprechen")
    if texts(replies) == [response_text("utter_ask_problem_description")]:
        replies = rest(servers, sender, f"Es geht um eine doppelte Abbuchung {MARKER}")
    assert texts(replies) == [response_text("utter_ask_customer_email")], replies
    rest(servers, sender, f"Meine Adresse ist {email}")
    assert any(custom.get("escalation") for custom in customs(rest(servers, sender, "ja, stimmt")))


def support(servers, path: str, body: dict) -> requests.Response:
    return requests.post(
        f"{servers.url}/webhooks/support/privacy/{path}",
        json=body,
        headers={"Authorization": f"Bearer {SUPPORT_TOKEN}"},
        timeout=30,
    )


def files_of(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file())


def test_a_customer_is_exported_and_erased_through_the_support_api(model_path, tmp_path):
    env = {"FAQBOT_SUPPORT_TOKEN": SUPPORT_TOKEN}
    with running(bot_servers(model_path, tmp_path, env=env)) as servers:
        rest(servers, "anna", f"Meine Karte {ANNA['question'][12:31]} wurde doppelt belastet {MARKER}")
        escalate(servers, "anna", ANNA["email"])
        rest(servers, "anna", f"Rückruf bitte unter 0171 2345678, {MARKER}")  # goes onto the ticket
        rest(servers, "bert", "Wie erhalte ich eine Rechnung?")
        escalate(servers, "bert", BERT["email"])
        time.sleep(1)  # the review queue's writer thread

        assert support(servers, "export", {"email": "kein@beispiel.de"}).json()["conversations"] == {}
        assert support(servers, "export", {"telefon": "0171"}).status_code == 400
        export = support(servers, "export", {"email": ANNA["email"]}).json()
        assert list(export["conversations"]) == ["anna"] and len(export["tickets"]) == 1
        assert MARKER in json.dumps(export, ensure_ascii=False) and BERT["email"] not in json.dumps(export)
        assert export["review_queue"], "the card message should have reached the review queue"

        erased = support(servers, "erase", {"email": ANNA["email"]})
        assert erased.status_code == 200 and erased.json()["counts"]["tickets"] == 1
        # The other customer's data is intact, and Anna can talk to the bot again afresh.
        assert list(support(servers, "export", {"email": BERT["email"]}).json()["conversations"]) == ["bert"]
        assert texts(rest(servers, "anna", "Wie erhalte ich eine Rechnung?"))
    stored = files_of(tmp_path / "db") if (tmp_path / "db").exists() else b""
    stored += b"".join((tmp_path / name).read_bytes() for name in os.listdir(tmp_path) if ".db" in name)
    with sqlite3.connect(tmp_path / "tickets.db") as connection:
        [(bert_contact,)] = connection.execute("SELECT contact FROM tickets WHERE sender_id = 'bert'").fetchall()
    assert BERT["email"] in encryption.decrypt(bert_contact, "tickets.contact")
    assert bert_contact.encode() in stored  # the check can fail
    logs = files_of(tmp_path / "logs")
    for trace in (ANNA["email"], "4111 1111 1111 1111", "0171 2345678", MARKER):
        assert trace.encode() not in stored, f"{trace} still in a database file"
        assert trace.encode() not in logs, f"{trace} in a log file"
