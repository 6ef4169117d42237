"""The lean SQL tracker store stores and loads exactly what Rasa's SQLTrackerStore does,
and faqbot.rasa_server's prebuilt response validator rejects what Rasa's rejects."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from jsonschema import ValidationError
from rasa.core.actions.action import RemoteAction
from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from faqbot.core.paths import PROJECT_DIR
from faqbot.server import rasa_server
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
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT sender_id, type_name, timestamp, intent_name, action_name, data FROM events ORDER BY id"
        ).fetchall()


def save_in_two_steps(lean_or_rasa: SQLTrackerStore) -> None:
    """As Rasa's processor does: save, load again, add a second session, save."""
    now = 1_764_000_000.0  # fixed, so both stores write the same rows
    tracker = DialogueStateTracker.from_events("kunde", session(now, "Hallo"), DOMAIN.slots)
    asyncio.run(lean_or_rasa.save(tracker))
    tracker = asyncio.run(lean_or_rasa.retrieve("kunde"))
    for event in session(now + 10, "Guten Morgen"):
        tracker.update(event)
    asyncio.run(lean_or_rasa.save(tracker))


def test_stores_the_same_rows_as_rasas_sql_tracker_store(tmp_path):
    save_in_two_steps(store(SQLTrackerStore, tmp_path / "rasa.db"))
    save_in_two_steps(store(LeanSQLTrackerStore, tmp_path / "lean.db"))
    assert len(rows(tmp_path / "lean.db")) == 12  # each event once
    assert rows(tmp_path / "lean.db") == rows(tmp_path / "rasa.db")


def test_loads_the_latest_session_like_rasa_and_all_sessions_on_request(tmp_path):
    db = tmp_path / "tracker.db"
    save_in_two_steps(store(LeanSQLTrackerStore, db))
    lean, rasa = store(LeanSQLTrackerStore, db), store(SQLTrackerStore, db)
    latest = asyncio.run(lean.retrieve("kunde"))
    assert [event.as_dict() for event in latest.events] == [
        event.as_dict() for event in asyncio.run(rasa.retrieve("kunde")).events
    ]
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


def test_action_responses_are_validated_as_rasa_does():
    rasa_server.install()  # as `python -m faqbot.rasa_server run` does before Rasa starts
    action = RemoteAction("action_answer_faq", None)
    assert action._validate_action_result({"events": [], "responses": [{"text": "Hallo"}]})
    with pytest.raises(ValidationError, match="Failed to validate Action server response"):
        action._validate_action_result({"events": [{"event": 42}], "responses": []})
