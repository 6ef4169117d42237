"""Encryption at rest (faqbot.core.encryption; README, "Datenschutz"): the values, the three
stores, key rotation, the files' modes, and the real servers writing nothing in clear."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sqlite3
import stat
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from conftest import bot_servers, running
from helpers import customs, database_files, read_table, texts
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from test_rest_conversations import response_text

from faqbot.core import encryption, privacy, shared_secrets
from faqbot.core.encryption import DataKeyError, decrypt, encrypt
from faqbot.core.paths import PROJECT_DIR
from faqbot.core.review_store import ReviewStore, sender_hash
from faqbot.core.tickets import TicketStore
from faqbot.server.tracker_store import LeanSQLTrackerStore
from faqbot.tools import datenschutz

DOMAIN = Domain.load(PROJECT_DIR / "domain.yml")
OLD = "k1:alter-schluessel-nur-fuer-die-tests-0123456789"
NEW = "k2:neuer-schluessel-nur-fuer-die-tests-0123456789"
EMAIL = "clara.beispiel@example.org"
QUESTION = "Meine Bestellung Zitronenfalter ist nicht angekommen"  # the marker word: only in this text


@pytest.fixture
def keys(monkeypatch):
    """FAQBOT_DATA_KEYS for one test (the first key encrypts)."""

    def use(*entries: str) -> None:
        monkeypatch.setenv(encryption.KEYS_VARIABLE, ",".join(entries))

    use(OLD)
    return use


# --- the values ---


def test_a_value_round_trips_and_is_stored_unreadable(keys):
    text = "Grüße von clara.beispiel@example.org 🙂"
    stored = encrypt(text, "tickets.question")
    assert stored.startswith("enc1:k1:") and "clara" not in stored and "beispiel" not in stored
    assert decrypt(stored, "tickets.question") == text
    assert encrypt(text, "tickets.question") != stored  # a fresh nonce each time
    assert encrypt(None, "tickets.question") is None and decrypt(None, "tickets.question") is None


def test_the_associated_data_binds_a_value_to_its_column(keys):
    stored = encrypt('{"email": "clara@example.org"}', "tickets.contact")
    with pytest.raises(DataKeyError, match="tickets.question"):
        decrypt(stored, "tickets.question")  # moved into another column: refused


def test_a_value_of_an_unknown_key_or_a_changed_value_is_an_error_never_garbage(keys):
    stored = encrypt("Rückruf unter 0171 2345678", "review.text")
    keys(NEW)
    with pytest.raises(DataKeyError, match="„k1“.*FAQBOT_DATA_KEYS"):
        decrypt(stored, "review.text")
    keys("k1:" + secrets.token_urlsafe(32))  # another secret under the same id
    with pytest.raises(DataKeyError, match="FAQBOT_DATA_KEYS"):
        decrypt(stored, "review.text")
    keys(OLD)
    changed = stored[:20] + ("A" if stored[20] != "A" else "B") + stored[21:]
    with pytest.raises(DataKeyError, match="verändert"):
        decrypt(changed, "review.text")


def test_values_stored_before_encryption_are_read_as_they_are(keys):
    assert decrypt('{"event": "user", "text": "Hallo"}', "events.data") == '{"event": "user", "text": "Hallo"}'
    assert decrypt("Wo ist mein Paket?", "tickets.question") == "Wo ist mein Paket?"


@pytest.mark.parametrize(
    "value, reason",
    [
        ("k1:kurz", "zu kurz"),
        ("ohne-kennung-" + "x" * 40, "Eintrag 1"),
        ("k 1:" + "x" * 40, "Eintrag 1"),
        (f"{OLD},{OLD}", "zweimal"),
    ],
    ids=["short", "no_id", "bad_id", "twice"],
)
def test_unusable_keys_stop_the_start(monkeypatch, value, reason):
    monkeypatch.setenv(encryption.KEYS_VARIABLE, value)
    with pytest.raises(SystemExit, match=f"FAQBOT_DATA_KEYS.*{reason}"):
        encryption.check()


def test_without_keys_one_is_made_once_for_the_installation(tmp_path, monkeypatch):
    monkeypatch.setenv("FAQBOT_SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.delenv(encryption.KEYS_VARIABLE)
    assert encryption.check() == "k1"
    made = tmp_path / "secrets" / encryption.KEYS_VARIABLE
    assert stat.S_IMODE(made.stat().st_mode) == 0o600 and made.read_text().startswith("k1:")
    stored = encrypt("Hallo", "review.text")
    monkeypatch.delenv(encryption.KEYS_VARIABLE)
    shared_secrets.ensure_environment()  # what every server does first: the same key again
    assert os.environ[encryption.KEYS_VARIABLE] == made.read_text().strip()
    assert decrypt(stored, "review.text") == "Hallo"


# --- the stores ---


def database_bytes(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in database_files(directory))


def conversation(start: float) -> list:
    return [
        ActionExecuted("action_listen", timestamp=start),
        UserUttered(
            QUESTION,
            intent={"name": "out_of_scope", "confidence": 0.9},
            metadata={"customer": {"id": "K-77", "email": EMAIL}},
            timestamp=start + 1,
        ),
        BotUttered("Diese Frage kann ich leider nicht beantworten.", timestamp=start + 2),
        SlotSet("customer_email", EMAIL, timestamp=start + 3),
    ]


def fill(directory: Path) -> privacy.DataStores:
    """All three stores with one customer's conversation, ticket (with an outbox row) and review entry."""
    tracker = LeanSQLTrackerStore(domain=DOMAIN, dialect="sqlite", db=str(directory / "tracker.db"))
    events = conversation(datetime(2026, 11, 27, tzinfo=timezone.utc).timestamp())
    asyncio.run(tracker.save(DialogueStateTracker.from_events("clara", events, DOMAIN.slots)))
    tickets = TicketStore(f"sqlite:///{directory / 'tickets.db'}")
    ticket = tickets.create(
        "clara",
        "rest",
        QUESTION,
        None,
        None,
        [{"from": "kunde", "text": QUESTION, "time": "2026-11-27T10:00:00+00:00"}],
        targets=["webhook"],
        contact={"id": "K-77", "email": EMAIL},
    )
    tickets.append_message(ticket.ticket_id, f"Nachtrag: {EMAIL}", targets=["webhook"])
    review = ReviewStore(directory / "review.db")
    entry = review.record(QUESTION, sender_hash("clara"), "out_of_scope")
    review.set_added_phrasing(entry, "out_of_scope", "meine bestellung zitronenfalter")
    review.close()
    return privacy.DataStores(tracker.engine, tickets, directory / "review.db")


def test_the_stores_write_no_text_or_contact_in_clear_and_read_back_the_same(keys, tmp_path):
    stores = fill(tmp_path)
    stored = database_bytes(tmp_path)
    for trace in ("Zitronenfalter", "zitronenfalter", EMAIL, "K-77", "nicht beantworten", "Nachtrag"):
        assert trace.encode() not in stored, trace
    # What the bot, the support team and the trainers read is the same as before.
    tracker = asyncio.run(
        LeanSQLTrackerStore(domain=DOMAIN, dialect="sqlite", db=str(tmp_path / "tracker.db")).retrieve("clara")
    )
    assert [event.as_dict() for event in tracker.events] == [
        event.as_dict()
        for event in DialogueStateTracker.from_events(
            "clara", conversation(datetime(2026, 11, 27, tzinfo=timezone.utc).timestamp()), DOMAIN.slots
        ).events
    ]
    [ticket] = stores.tickets.open_tickets()
    assert (ticket.question, ticket.contact) == (QUESTION, {"id": "K-77", "email": EMAIL})
    assert [line["text"] for line in ticket.transcript] == [QUESTION, f"Nachtrag: {EMAIL}"]
    payloads = [delivery.payload for delivery in stores.tickets.deliveries_for(ticket.ticket_id)]
    assert payloads[0]["question"] == QUESTION and payloads[1]["text"] == f"Nachtrag: {EMAIL}"
    review = ReviewStore(tmp_path / "review.db")
    [entry] = review.entries()
    assert (entry.text, entry.added_phrasing) == (QUESTION, "meine bestellung zitronenfalter")
    review.close()
    # Lookups by e-mail and customer id still find the customer, the export is readable.
    assert privacy.find(stores, "email", EMAIL.upper()).conversation_ids == {"clara"}
    assert privacy.find(stores, "customer_id", "k-77").conversation_ids == {"clara"}
    exported = json.dumps(privacy.export(stores, privacy.find(stores, "email", EMAIL)), ensure_ascii=False)
    assert QUESTION in exported and "meine bestellung zitronenfalter" in exported


def test_an_intent_name_the_domain_does_not_know_is_not_stored(keys, tmp_path):
    """The intent name stays readable (Rasa's column): it must never carry a customer's words."""
    store = LeanSQLTrackerStore(domain=DOMAIN, dialect="sqlite", db=str(tmp_path / "tracker.db"))
    events = [
        UserUttered("/ich bin Clara", intent={"name": "ich bin Clara", "confidence": 1.0}),
        UserUttered("Hallo", intent={"name": "greet", "confidence": 0.9}),
    ]
    asyncio.run(store.save(DialogueStateTracker.from_events("clara", events, DOMAIN.slots)))
    assert [row["intent_name"] for row in read_table(tmp_path / "tracker.db", "events")] == [None, "greet"]


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_files_are_readable_only_by_their_owner(keys, tmp_path):
    with umask(0o022):  # what a default shell gives: 0644 for new files
        (tmp_path / "old").mkdir()
        existing = tmp_path / "old" / "tickets.db"
        TicketStore(f"sqlite:///{existing}")
        existing.chmod(0o644)  # made by an earlier version
        TicketStore(f"sqlite:///{existing}")
        assert mode(existing) == 0o600
        fill(tmp_path)
        review = ReviewStore(tmp_path / "review.db")  # write-ahead log: -wal and -shm while open
        review.record("noch eine Frage", "abc", "fallback")
        files = database_files(tmp_path)
        assert {path.name for path in files} >= {"tracker.db", "tickets.db", "review.db", "review.db-wal"}
        assert {str(path): mode(path) for path in files} == {str(path): 0o600 for path in files}
        review.close()


# --- key rotation ---


def raw_values(directory: Path) -> list[str]:
    """Every encrypted column's value as stored."""
    queries = {
        "tracker.db": "SELECT data FROM events",
        "tickets.db": "SELECT question FROM tickets UNION ALL SELECT transcript FROM tickets "
        "UNION ALL SELECT contact FROM tickets UNION ALL SELECT payload FROM deliveries",
        "review.db": "SELECT text FROM review UNION ALL SELECT added_phrasing FROM review",
    }
    values = []
    for name, query in queries.items():
        with sqlite3.connect(directory / name) as connection:
            values += [value for (value,) in connection.execute(query) if value is not None]
    return values


def datenschutz_cli(directory: Path, monkeypatch, *args: str) -> int:
    endpoints = directory / "endpoints.yml"
    endpoints.write_text(
        f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: {directory / 'tracker.db'}\n"
        f"event_broker:\n  type: faqbot.server.review_broker.ReviewQueueBroker\n  db: {directory / 'review.db'}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("FAQBOT_TICKET_DB", str(directory / "tickets.db"))
    monkeypatch.delenv("FAQBOT_TICKET_DB_URL", raising=False)
    monkeypatch.delenv("FAQBOT_REVIEW_DB", raising=False)
    return datenschutz.main(["--endpoints", str(endpoints), "--projekt", str(directory), *args])


def test_key_rotation_encrypts_everything_with_the_new_key_and_old_data_stays_readable(
    keys, tmp_path, monkeypatch, capsys
):
    stores = fill(tmp_path)
    with sqlite3.connect(tmp_path / "tickets.db") as connection:  # a ticket from before encryption
        connection.execute(
            "INSERT INTO tickets (ticket_id, sender_id, created_at, question, transcript, status, contact) "
            "VALUES ('T-alt', 'alt', '2026-01-01', 'Alte Frage', '[]', 'closed', '{\"id\": \"alt\"}')"
        )
    expected = privacy.export(stores, privacy.find(stores, "email", EMAIL))
    before = raw_values(tmp_path)
    legacy = ("Alte Frage", "[]", '{"id": "alt"}')
    assert all(value.startswith("enc1:k1:") for value in before if value not in legacy)

    keys(NEW, OLD)  # step 1: the new key first, the old one after it; the servers restart
    assert privacy.export(stores, privacy.find(stores, "email", EMAIL))["tickets"] == expected["tickets"]
    assert datenschutz_cli(tmp_path, monkeypatch, "schluessel-wechseln") == 0  # step 2
    out = capsys.readouterr().out
    assert "Gesprächsereignisse: 4 neu verschlüsselt, 0 schon mit „k2“" in out
    assert "Tickets: 2 neu verschlüsselt" in out and "Zustellungen: 2 neu verschlüsselt" in out
    assert "Einträge der Prüfliste: 1 neu verschlüsselt" in out and "(k1) werden nicht mehr gebraucht" in out
    after = raw_values(tmp_path)
    assert len(after) == len(before) and all(value.startswith("enc1:k2:") for value in after)
    stored = database_bytes(tmp_path)
    old = [value for value in before if value.startswith("enc1:k1:")]
    assert old and not [value for value in old if value.encode() in stored]  # the old ciphertexts are overwritten

    keys(NEW)  # step 3: the old key removed; everything still reads the same
    assert privacy.export(stores, privacy.find(stores, "email", EMAIL))["tickets"] == expected["tickets"]
    assert TicketStore(f"sqlite:///{tmp_path / 'tickets.db'}").get("T-alt").question == "Alte Frage"
    assert datenschutz_cli(tmp_path, monkeypatch, "schluessel-wechseln") == 0  # safe to repeat
    assert "Tickets: 0 neu verschlüsselt, 2 schon mit „k2“" in capsys.readouterr().out


def test_key_rotation_never_overwrites_what_a_server_writes_meanwhile(keys, tmp_path, monkeypatch):
    stores = fill(tmp_path)
    [ticket] = stores.tickets.open_tickets()
    keys(NEW, OLD)
    reencrypt, appended = encryption.reencrypt, []

    def server_writes_meanwhile(value, field):
        if field == "tickets.transcript" and not appended:  # between the rotation's read and its write
            appended.append(stores.tickets.append_message(ticket.ticket_id, "Noch etwas"))
        return reencrypt(value, field)

    monkeypatch.setattr(encryption, "reencrypt", server_writes_meanwhile)
    rotated = privacy.rotate_keys(stores)
    assert rotated["tickets"].changed_meanwhile == 1 and rotated["tickets"].encrypted == 0
    assert [line["text"] for line in stores.tickets.get(ticket.ticket_id).transcript][-1] == "Noch etwas"
    monkeypatch.setattr(encryption, "reencrypt", reencrypt)
    assert privacy.rotate_keys(stores)["tickets"].encrypted == 1  # run again: done
    keys(NEW)
    assert [line["text"] for line in stores.tickets.get(ticket.ticket_id).transcript][-1] == "Noch etwas"


def test_a_value_no_key_decrypts_stops_the_command_with_the_reason(keys, tmp_path, monkeypatch, capsys):
    fill(tmp_path)
    keys(NEW)  # the old key forgotten too early
    assert datenschutz_cli(tmp_path, monkeypatch, "schluessel-wechseln") == 1
    error = capsys.readouterr().err
    assert "mit dem Schlüssel „k1“ verschlüsselt, der nicht in FAQBOT_DATA_KEYS steht" in error


# --- the real servers ---

SUPPORT_TOKEN = "support-token-for-the-encryption-tests-012345678"
MARKER = "Zitronenfalter"


def test_what_customers_send_over_rest_is_in_no_file_in_clear(model_path, tmp_path):
    env = {"FAQBOT_SUPPORT_TOKEN": SUPPORT_TOKEN}
    with running(bot_servers(model_path, tmp_path, env=env)) as servers:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {servers.rest_token}"

        def send(message: str) -> list[dict]:
            reply = session.post(
                f"{servers.url}/webhooks/rest/webhook", json={"sender": "kundin-7", "message": message}, timeout=30
            )
            assert reply.status_code == 200, reply.text
            return reply.json()

        assert texts(send("Wie erhalte ich eine Rechnung?"))  # the bot answers as before
        # Not in the FAQ: the offer of the support team, or „Meinten Sie …?“ with „Keine davon“.
        unknown = texts(send(f"Kann ich bei Ihnen einen {MARKER} kaufen?"))
        assert unknown in ([response_text("utter_offer_handoff")], [response_text("utter_clarify")])
        replies = send("Ich möchte bitte mit einem Mitarbeiter sprechen")
        if texts(replies) == [response_text("utter_ask_problem_description")]:
            replies = send(f"Es geht um einen {MARKER}")
        assert texts(replies) == [response_text("utter_ask_customer_email")]
        send(f"Meine Adresse ist {EMAIL}")
        [escalation] = [custom["escalation"] for custom in customs(send("ja, stimmt")) if custom.get("escalation")]
        assert texts(send(f"Noch ein {MARKER} für das Ticket"))  # after the handoff: onto the ticket
        time.sleep(1)  # the review queue's writer thread
        ticket = requests.get(
            f"{servers.url}/webhooks/support/tickets/{escalation['ticket_id']}",
            headers={"Authorization": f"Bearer {SUPPORT_TOKEN}"},
            timeout=30,
        ).json()
        # The support team reads the ticket in clear ...
        assert ticket["contact"] == {"id": "kundin-7", "email": EMAIL}
        assert MARKER in " ".join(line["text"] for line in ticket["transcript"])
        # ... and the trainers the review queue; but no file holds either in clear.
        review = ReviewStore(tmp_path / "review.db")
        assert any(MARKER in entry.text for entry in review.entries(status=None))
        review.close()
        files = [path for path in tmp_path.rglob("*") if path.is_file()]
        assert {"tracker.db", "tickets.db", "review.db", "review.db-wal"} <= {path.name for path in files}
        while_running = {path: path.read_bytes() for path in files}
        modes = {path.name: mode(path) for path in database_files(tmp_path)}
        assert modes == dict.fromkeys(modes, 0o600)
    after_stop = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    for stored in (while_running, after_stop):
        for path, content in stored.items():
            for trace in (MARKER, EMAIL, "Mitarbeiter sprechen"):
                assert trace.encode() not in content, f"{trace} in clear in {path.relative_to(tmp_path)}"
