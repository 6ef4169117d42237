"""The lean SQL tracker store stores and loads exactly what Rasa's SQLTrackerStore does (its
event data encrypted), Rasa loads it and calls its replacements, and a failed start-up check
stops Rasa instead of letting it fall back to its in-memory store."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import SQLTrackerStore, TrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import EndpointConfig
from test_patches import counting

from faqbot.core import encryption
from faqbot.core.paths import PROJECT_DIR
from faqbot.server import patches
from faqbot.server.patches import PatchTargetError
from faqbot.server.tracker_store import LeanSQLTrackerStore

DOMAIN = Domain.load(PROJECT_DIR / "domain.yml")


class CollectingBroker(EventBroker):
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish(self, event: dict[str, Any]) -> None:
        self.events.append(event)


def session(start: float, text: str) -> list:
    return [
        ActionExecuted("action_session_start", timestamp=start),
        SessionStarted(timestamp=start + 0.001),
        ActionExecuted("action_listen", timestamp=start + 0.002),
        UserUttered(text, intent={"name": "greet", "confidence": 0.93}, timestamp=start + 0.003),
        ActionExecuted("utter_greet", timestamp=start + 0.004),
        BotUttered("Guten Tag!", timestamp=start + 0.005),
    ]


def store(kind: type, db: Path, broker: EventBroker = None) -> SQLTrackerStore:
    return kind(domain=DOMAIN, dialect="sqlite", db=str(db), event_broker=broker)


def rows(db: Path) -> list[tuple]:
    """The stored rows, the event data decrypted (Rasa's own store writes it in clear)."""
    with sqlite3.connect(db) as connection:
        stored = connection.execute(
            "SELECT sender_id, type_name, timestamp, intent_name, action_name, data FROM events ORDER BY id"
        ).fetchall()
    return [(*row[:-1], encryption.decrypt(row[-1], "events.data")) for row in stored]


def raw_data(db: Path) -> list[str]:
    with sqlite3.connect(db) as connection:
        return [data for (data,) in connection.execute("SELECT data FROM events ORDER BY id")]


def save_in_two_steps(lean_or_rasa: SQLTrackerStore) -> None:
    """As Rasa's processor does: save, load again, add a second session, save."""
    now = 1_764_000_000.0  # fixed, so both stores write the same rows
    tracker = DialogueStateTracker.from_events("kunde", session(now, "Hallo"), DOMAIN.slots)
    asyncio.run(lean_or_rasa.save(tracker))
    tracker = asyncio.run(lean_or_rasa.retrieve("kunde"))
    for event in session(now + 10, "Guten Morgen"):
        tracker.update(event)
    asyncio.run(lean_or_rasa.save(tracker))


def test_stores_the_same_rows_as_rasas_sql_tracker_store_once_decrypted(tmp_path):
    save_in_two_steps(store(SQLTrackerStore, tmp_path / "rasa.db"))
    save_in_two_steps(store(LeanSQLTrackerStore, tmp_path / "lean.db"))
    assert len(rows(tmp_path / "lean.db")) == 12  # each event once
    assert rows(tmp_path / "lean.db") == rows(tmp_path / "rasa.db")
    assert all(data.startswith(encryption.PREFIX) for data in raw_data(tmp_path / "lean.db"))


def test_loads_the_latest_session_like_rasa_and_all_sessions_on_request(tmp_path):
    db, rasa_db = tmp_path / "tracker.db", tmp_path / "rasa.db"
    save_in_two_steps(store(LeanSQLTrackerStore, db))
    save_in_two_steps(store(SQLTrackerStore, rasa_db))
    lean, rasa = store(LeanSQLTrackerStore, db), store(SQLTrackerStore, rasa_db)
    expected = [event.as_dict() for event in asyncio.run(rasa.retrieve("kunde")).events]
    latest = asyncio.run(lean.retrieve("kunde"))
    assert [event.as_dict() for event in latest.events] == expected
    # A conversation stored before encryption (by Rasa's own store) loads the same.
    assert [event.as_dict() for event in asyncio.run(store(LeanSQLTrackerStore, rasa_db).retrieve("kunde")).events] == (
        expected
    )
    assert [event.text for event in latest.events if isinstance(event, UserUttered)] == ["Guten Morgen"]
    everything = asyncio.run(lean.retrieve_full_tracker("kunde"))
    assert len(everything.events) == 12
    assert asyncio.run(lean.retrieve("unbekannt")) is None


def test_hands_each_new_event_to_the_event_broker_once(tmp_path):
    broker = CollectingBroker()
    save_in_two_steps(store(LeanSQLTrackerStore, tmp_path / "tracker.db", broker))
    assert [event["event"] for event in broker.events] == [
        "action",
        "session_started",
        "action",
        "user",
        "action",
        "bot",
    ] * 2
    assert {event["sender_id"] for event in broker.events} == {"kunde"}


def endpoint(db: Path) -> EndpointConfig:
    """The tracker store as endpoints.yml configures it."""
    return EndpointConfig(type="faqbot.server.tracker_store.LeanSQLTrackerStore", dialect="sqlite", db=str(db))


async def test_rasa_loads_the_lean_store_and_its_own_calls_reach_the_lean_queries(tmp_path, monkeypatch):
    retrieved = counting(monkeypatch, LeanSQLTrackerStore, "_retrieve")
    broker = CollectingBroker()
    lean = TrackerStore.create(endpoint(tmp_path / "tracker.db"), DOMAIN, broker)  # as Rasa's load_agent does
    assert type(lean) is LeanSQLTrackerStore  # not wrapped, not Rasa's fallback
    tracker = await lean.get_or_create_tracker("kunde")  # Rasa: retrieve (nothing yet), create, save
    assert [(args[1:], kwargs) for args, kwargs in retrieved] == [
        (("kunde",), {"fetch_events_from_all_sessions": False})
    ]
    tracker.update(UserUttered("Hallo", intent={"name": "greet", "confidence": 0.93}))
    await lean.save(tracker)
    assert [event["event"] for event in broker.events] == ["action", "user"]  # action_listen, then the message
    assert [event.type_name for event in (await lean.retrieve("kunde")).events] == ["action", "user"]
    assert len((await lean.retrieve_full_tracker("kunde")).events) == 2
    assert [kwargs["fetch_events_from_all_sessions"] for _, kwargs in retrieved] == [False, False, True]


async def test_rasas_own_queries_use_the_lean_stores_engine(tmp_path):
    """The SQLite engine with a connection pool replaces Rasa's; Rasa's sessionmaker (keys(),
    session_scope()) must use it too, not the replaced one."""
    lean = TrackerStore.create(endpoint(tmp_path / "tracker.db"), DOMAIN)
    assert isinstance(lean.engine.pool, sa.pool.QueuePool)
    with lean.session_scope() as session:
        assert session.get_bind() is lean.engine
    await lean.get_or_create_tracker("kunde")
    assert list(await lean.keys()) == ["kunde"]


@pytest.mark.parametrize("failure", ["version", "table"])
def test_a_failed_check_stops_rasa_instead_of_falling_back_to_its_in_memory_store(tmp_path, monkeypatch, failure):
    if failure == "version":
        monkeypatch.setattr(patches, "RASA_VERSION", "0.0.1")
    else:  # an upgrade that renamed Rasa's table class
        monkeypatch.delattr(SQLTrackerStore, "SQLEvent")
    monkeypatch.delitem(sys.modules, "faqbot.server.tracker_store")  # imported afresh, as when Rasa starts
    with pytest.raises(PatchTargetError, match="faqbot.server.tracker_store.LeanSQLTrackerStore"):
        TrackerStore.create(endpoint(tmp_path / "tracker.db"), DOMAIN)
