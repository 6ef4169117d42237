"""Rasa's SQL tracker store with leaner queries: same tables, same settings as ``type: SQL``.

Rasa 3.6's ``SQLTrackerStore`` builds its queries through SQLAlchemy's ORM on every
message and counts the stored events twice per save (once to find the new events for
the event broker, once to decide what to insert). Under load that was ~40 % of the Rasa
server's CPU (README, "Speed"). This store runs the same SQL as prepared text
statements: one query to load the current session, one count and one bulk insert per
save, in one transaction, and hands the new events to the event broker (the review
queue, ``faqbot.review_queue``) after they are committed.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Text

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.events import SessionStarted
from rasa.shared.core.trackers import DialogueStateTracker

from faqbot import rasa_speedups

# Rasa imports this module when it loads endpoints.yml: the one hook into the Rasa server.
rasa_speedups.install()

# Rasa's definition of the current session: events since the latest session_started
# (all events if there is none), in the order they were stored.
_SESSION_FILTER = """
    sender_id = :sender_id AND (
        timestamp >= (SELECT MAX(timestamp) FROM events
                      WHERE sender_id = :sender_id AND type_name = :session_started)
        OR NOT EXISTS (SELECT 1 FROM events
                       WHERE sender_id = :sender_id AND type_name = :session_started))
"""
_SESSION_EVENTS = sa.text(f"SELECT data FROM events WHERE {_SESSION_FILTER} ORDER BY id")
_ALL_EVENTS = sa.text("SELECT data FROM events WHERE sender_id = :sender_id ORDER BY id")
_SESSION_COUNT = sa.text(f"SELECT COUNT(*) FROM events WHERE {_SESSION_FILTER}")


class LeanSQLTrackerStore(SQLTrackerStore):
    def _session_params(self, sender_id: Text) -> Dict[str, Any]:
        return {"sender_id": sender_id, "session_started": SessionStarted.type_name}

    async def _retrieve(self, sender_id: Text,
                        fetch_events_from_all_sessions: bool) -> Optional[DialogueStateTracker]:
        query = _ALL_EVENTS if fetch_events_from_all_sessions else _SESSION_EVENTS
        with self.engine.connect() as connection:
            rows = connection.execute(query, self._session_params(sender_id)).fetchall()
        if not rows or not self.domain:
            return None
        return DialogueStateTracker.from_dict(sender_id, [json.loads(data) for (data,) in rows],
                                              self.domain.slots)

    async def save(self, tracker: DialogueStateTracker) -> None:
        with self.engine.begin() as connection:
            stored = connection.execute(_SESSION_COUNT,
                                        self._session_params(tracker.sender_id)).scalar()
            new_events = list(tracker.events)[stored:]
            if new_events:
                connection.execute(self.SQLEvent.__table__.insert(),
                                   [self._row(tracker.sender_id, event) for event in new_events])
        if self.event_broker is not None:
            await self._stream_new_events(self.event_broker, new_events, tracker.sender_id)

    @staticmethod
    def _row(sender_id: Text, event: Any) -> Dict[str, Any]:
        # The same columns Rasa's SQLTrackerStore.save writes.
        data = event.as_dict()
        intent = (data.get("parse_data") or {}).get("intent") or {}
        return {"sender_id": sender_id, "type_name": event.type_name,
                "timestamp": data.get("timestamp"),
                "intent_name": intent.get("name"),
                "action_name": data.get("name"), "data": json.dumps(data)}

