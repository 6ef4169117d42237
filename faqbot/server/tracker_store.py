"""Rasa's SQL tracker store with leaner queries: same tables, same settings as ``type: SQL``.

Rasa 3.6's ``SQLTrackerStore`` builds its queries through SQLAlchemy's ORM on every
message and counts the stored events twice per save (once to find the new events for
the event broker, once to decide what to insert). Under load that was ~40 % of the Rasa
server's CPU (README, "Speed"). This store runs the same queries, built once with
SQLAlchemy Core: one to load the current session, one count and one bulk insert per save
in one transaction, and hands the new events to the event broker (the review queue,
``faqbot.server.review_broker``) after they are committed.

The ``data`` column (the whole event: message texts, slot values such as the customer's
e-mail address, metadata) is encrypted (``faqbot.core.encryption``, field ``events.data``);
the other columns stay readable for Rasa's queries and hold no customer text: the intent
name is stored only if the domain knows it. A SQLite file is made readable only by its owner.

It overrides private methods of Rasa's store (``_retrieve``, called by ``retrieve`` and
``retrieve_full_tracker``) and uses its table and ``_stream_new_events``: checked when
the module is imported (``check_targets``), before anything of the store is used.
"""

from __future__ import annotations

import inspect
import itertools
import json
from typing import Any

import rasa.core.tracker_store
import sqlalchemy as sa
from rasa.shared.core.events import SessionStarted
from rasa.shared.core.trackers import DialogueStateTracker

from faqbot.core.encryption import decrypt, encrypt, private_file
from faqbot.server import patches
from faqbot.server.patches import require_attribute, require_version

PATCH = "faqbot.server.tracker_store.LeanSQLTrackerStore"
FIELD = "events.data"  # associated data of the encrypted column


def check_targets() -> None:
    require_version("rasa", patches.RASA_VERSION, PATCH)
    store = require_attribute(rasa.core.tracker_store, "SQLTrackerStore", PATCH)
    for name in ("_retrieve", "_stream_new_events", "session_scope"):
        require_attribute(store, name, PATCH)
    require_attribute(require_attribute(store, "SQLEvent", PATCH), "__table__", PATCH)


# Rasa imports this module when it loads the tracker store (endpoints.yml). Should that
# fail with an ImportError or AttributeError, Rasa 3.6 runs on its in-memory store
# instead, so check first: a PatchTargetError stops the server.
check_targets()
SQLTrackerStore = rasa.core.tracker_store.SQLTrackerStore

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


def _sqlite_file(args: tuple, kwargs: dict[str, Any]) -> str | None:
    """The SQLite file Rasa's store will open with these arguments, if it is one."""
    try:
        settings = inspect.signature(SQLTrackerStore.__init__).bind(None, *args, **kwargs).arguments
    except TypeError:  # Rasa's own call will say what is wrong
        return None
    if settings.get("dialect", "sqlite") != "sqlite" or settings.get("host"):
        return None
    return settings.get("db", "rasa.db")


class LeanSQLTrackerStore(SQLTrackerStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        db = _sqlite_file(args, kwargs)
        if db:
            private_file(db)  # 0600 before Rasa's store creates its tables in it
        super().__init__(*args, **kwargs)
        self._intents: frozenset[str] = frozenset()
        self._intents_of: Any = None
        rasa_engine = require_attribute(self, "engine", PATCH)
        if rasa_engine.dialect.name == "sqlite":
            # SQLAlchemy opens a new SQLite connection for every statement (NullPool);
            # keep a few open instead. All access is from Rasa's event-loop thread. Rasa's
            # own queries (keys(), session_scope()) go through its sessionmaker: the same engine.
            self.engine = sa.create_engine(rasa_engine.url, poolclass=sa.pool.QueuePool, pool_size=2)
            require_attribute(self, "sessionmaker", PATCH).configure(bind=self.engine)
            rasa_engine.dispose()

    async def _retrieve(self, sender_id: str, fetch_events_from_all_sessions: bool) -> DialogueStateTracker | None:
        query = _ALL_EVENTS if fetch_events_from_all_sessions else _SESSION_EVENTS
        with self.engine.connect() as connection:
            rows = connection.execute(query, {"sender_id": sender_id}).fetchall()
        if not rows or not self.domain:
            return None
        events = [json.loads(decrypt(data, FIELD)) for (data,) in rows]
        return DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)

    async def save(self, tracker: DialogueStateTracker) -> None:
        with self.engine.begin() as connection:
            stored = connection.execute(_SESSION_COUNT, {"sender_id": tracker.sender_id}).scalar()
            new_events = list(itertools.islice(tracker.events, stored, None))
            if new_events:
                connection.execute(_INSERT, [self._row(tracker.sender_id, event) for event in new_events])
        if self.event_broker is not None:
            await self._stream_new_events(self.event_broker, new_events, tracker.sender_id)

    def _row(self, sender_id: str, event: Any) -> dict[str, Any]:
        # The same columns Rasa's SQLTrackerStore.save writes, the data encrypted.
        data = event.as_dict()
        intent = (data.get("parse_data") or {}).get("intent") or {}
        return {
            "sender_id": sender_id,
            "type_name": event.type_name,
            "timestamp": data.get("timestamp"),
            "intent_name": self._known_intent(intent.get("name")),
            "action_name": data.get("name"),
            "data": encrypt(json.dumps(data), FIELD),
        }

    def _known_intent(self, name: str | None) -> str | None:
        """The intent name, if the domain has it. Rasa only ever sets known ones (a "/..."
        message naming an unknown intent is understood as text), but this column is not
        encrypted: whatever else might reach it must not be a customer's words."""
        if name is None or self.domain is None:
            return name
        if self._intents_of is not self.domain:
            self._intents, self._intents_of = frozenset(self.domain.intents), self.domain
        return name if name in self._intents else None
