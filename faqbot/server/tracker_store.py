"""Rasa's SQL tracker store with leaner queries: same tables, same settings as ``type: SQL``.

Rasa 3.6's ``SQLTrackerStore`` builds its queries through SQLAlchemy's ORM on every
message and counts the stored events twice per save (once to find the new events for
the event broker, once to decide what to insert). Under load that was ~40 % of the Rasa
server's CPU (README, "Speed"). This store runs the same queries, built once with
SQLAlchemy Core: one to load the current session, one count and one bulk insert per save
in one transaction, and hands the new events to the event broker (the review queue,
``faqbot.server.review_broker``) after they are committed.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.events import SessionStarted
from rasa.shared.core.trackers import DialogueStateTracker

# Rasa's query for the current session: the events since the latest session_started (all
# if there is none), in the order they were stored. Built once, with SQLAlchemy Core, so
# each dialect quotes and compiles it its own way.
_EVENTS = SQLTrackerStore.SQLEvent.__table__
_SENDER = _EVENTS.c.sender_id == sa.bindparam("sender_id")
_SESSION_START = (
    sa.select(sa.func.max(_EVENTS.c.timestamp))
    .where(_SENDER, _EVENTS.c.type_name == SessionStarted.type_name)
    .scalar_subquery()
)
_IN_SESSION = sa.and_(_SENDER, sa.or_(_EVENTS.c.timestamp >= _SESSION_START, _SESSION_START.is_(None)))
_SESSION_EVENTS = sa.select(_EVENTS.c.data).where(_IN_SESSION).order_by(_EVENTS.c.id)
_ALL_EVENTS = sa.select(_EVENTS.c.data).where(_SENDER).order_by(_EVENTS.c.id)
_SESSION_COUNT = sa.select(sa.func.count()).select_from(_EVENTS).where(_IN_SESSION)
_INSERT = _EVENTS.insert()


class LeanSQLTrackerStore(SQLTrackerStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.engine.dialect.name == "sqlite":
            # SQLAlchemy opens a new SQLite connection for every statement (NullPool);
            # keep a few open instead. All access is from Rasa's event-loop thread.
            self.engine = sa.create_engine(self.engine.url, poolclass=sa.pool.QueuePool, pool_size=2)

    async def _retrieve(self, sender_id: str, fetch_events_from_all_sessions: bool) -> DialogueStateTracker | None:
        query = _ALL_EVENTS if fetch_events_from_all_sessions else _SESSION_EVENTS
        with self.engine.connect() as connection:
            rows = connection.execute(query, {"sender_id": sender_id}).fetchall()
        if not rows or not self.domain:
            return None
        return DialogueStateTracker.from_dict(sender_id, [json.loads(data) for (data,) in rows], self.domain.slots)

    async def save(self, tracker: DialogueStateTracker) -> None:
        with self.engine.begin() as connection:
            stored = connection.execute(_SESSION_COUNT, {"sender_id": tracker.sender_id}).scalar()
            new_events = list(itertools.islice(tracker.events, stored, None))
            if new_events:
                connection.execute(_INSERT, [self._row(tracker.sender_id, event) for event in new_events])
        if self.event_broker is not None:
            await self._stream_new_events(self.event_broker, new_events, tracker.sender_id)

    @staticmethod
    def _row(sender_id: str, event: Any) -> dict[str, Any]:
        # The same columns Rasa's SQLTrackerStore.save writes.
        data = event.as_dict()
        intent = (data.get("parse_data") or {}).get("intent") or {}
        return {
            "sender_id": sender_id,
            "type_name": event.type_name,
            "timestamp": data.get("timestamp"),
            "intent_name": intent.get("name"),
            "action_name": data.get("name"),
            "data": json.dumps(data),
        }
