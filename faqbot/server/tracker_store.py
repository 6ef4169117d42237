"""Rasa's SQL tracker store with leaner queries, and a conflict check per conversation.

Same tables and settings as ``type: SQL``. Rasa 3.6's ``SQLTrackerStore`` builds its
queries through SQLAlchemy's ORM on every message and counts the stored events twice per
save. Under load that was ~40 % of the Rasa server's CPU (README, "Speed"). This store runs
the same queries, built once with SQLAlchemy Core, and hands the new events to the event
broker (the review queue, ``faqbot.server.review_broker``) after they are committed.

**No lost turns** (issue 13). Rasa decides what to save by counting the stored events: a
turn of the same conversation stored meanwhile by another instance makes this turn's events
look stored already, and they are dropped without an error. Here each tracker remembers
how many of its events were loaded and the conversation's version then (table
``conversation_versions``: per conversation, the number of events saved); a save stores
the events after those, and in the same transaction moves the version on only if it is
unchanged (an INSERT for a conversation without a row: the primary key refuses the second).
Otherwise nothing is stored and ``TurnConflict`` is raised: the caller gets a 503 and sends
again. Conversations stored before the table existed get their row with their next save.

**Failing loudly.** A database error while loading or saving raises ``ServiceUnavailable``
(the caller gets a 503); the connections are checked before use (``pool_pre_ping``), so the
store goes on by itself after a database restart. Rasa's Agent wraps every tracker store in
``FailSafeTrackerStore``, which would answer a failed read with a new, empty conversation
and keep a failed write in memory: patched here, when Rasa imports this module, to raise.

The ``data`` column (the whole event: message texts, slot values such as the customer's
e-mail address, metadata) is encrypted (``faqbot.core.encryption``, field ``events.data``);
the other columns stay readable for Rasa's queries and hold no customer text: the intent
name is stored only if the domain knows it. A SQLite file is made readable only by its owner.

It overrides private methods of Rasa's store (``_retrieve``, called by ``retrieve`` and
``retrieve_full_tracker``), uses its table, engine settings and ``_stream_new_events``, and
replaces the error handlers of ``FailSafeTrackerStore``: checked when the module is imported
(``check_targets``), before anything of the store is used.
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
from dataclasses import dataclass
from typing import Any, NoReturn

import rasa.core.tracker_store
import sqlalchemy as sa
from rasa.shared.core.events import BotUttered, SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from faqbot.core.encryption import decrypt, encrypt, private_file
from faqbot.core.metrics import TRACKER_STORE_ERRORS
from faqbot.server import patches
from faqbot.server.failures import ServiceUnavailable, TurnConflict
from faqbot.server.patches import require_attribute, require_version

PATCH = "faqbot.server.tracker_store.LeanSQLTrackerStore"
FIELD = "events.data"  # associated data of the encrypted column
# Set on each tracker this store loaded or saved: what of it is stored (see _Stored).
STORED = "_faqbot_stored"

logger = logging.getLogger(__name__)


def check_targets() -> None:
    require_version("rasa", patches.RASA_VERSION, PATCH)
    store = require_attribute(rasa.core.tracker_store, "SQLTrackerStore", PATCH)
    for name in ("_retrieve", "_stream_new_events", "session_scope"):
        require_attribute(store, name, PATCH)
    require_attribute(require_attribute(store, "SQLEvent", PATCH), "__table__", PATCH)
    require_attribute(rasa.core.tracker_store, "create_engine_kwargs", PATCH)
    fail_safe = require_attribute(rasa.core.tracker_store, "FailSafeTrackerStore", PATCH)
    for name in ("on_tracker_store_error", "on_tracker_store_retrieve_error"):
        require_attribute(fail_safe, name, PATCH)


# Rasa imports this module when it loads the tracker store (endpoints.yml). Should that
# fail with an ImportError or AttributeError, Rasa 3.6 runs on its in-memory store
# instead, so check first: a PatchTargetError stops the server.
check_targets()
SQLTrackerStore = rasa.core.tracker_store.SQLTrackerStore


def _raise_instead_of_falling_back(self: Any, error: Exception) -> NoReturn:
    """FailSafeTrackerStore calls these when its store failed, then would return an empty
    conversation (retrieve) or save into memory (save): the turn fails instead."""
    if isinstance(error, ServiceUnavailable):
        raise error
    logger.error("Gesprächsspeicher fehlgeschlagen", exc_info=error)
    raise ServiceUnavailable(f"Gesprächsspeicher fehlgeschlagen: {type(error).__name__}") from error


# Rasa's Agent wraps the store only after loading it (from endpoints.yml, importing this
# module): patched by then, for every store Rasa wraps.
rasa.core.tracker_store.FailSafeTrackerStore.on_tracker_store_error = _raise_instead_of_falling_back
rasa.core.tracker_store.FailSafeTrackerStore.on_tracker_store_retrieve_error = _raise_instead_of_falling_back

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
_ANY_EVENT = sa.select(_EVENTS.c.id).where(_SENDER).limit(1)
_COUNT = sa.select(sa.func.count()).select_from(_EVENTS).where(_SENDER)
_INSERT = _EVENTS.insert()

# Per conversation the number of events saved (not lowered when events are deleted): its
# version. Created next to Rasa's table; Rasa's own store ignores it.
_VERSIONS = sa.Table(
    "conversation_versions",
    sa.MetaData(),
    sa.Column("sender_id", sa.String(255), primary_key=True),
    sa.Column("events", sa.Integer, nullable=False),
    # The message id of the latest customer message stored: a request sent again (nginx after
    # an instance died while answering it, or an integration repeating its X-Request-ID) is
    # answered from what was stored, not processed twice (``answered``).
    sa.Column("last_message_id", sa.String(64), nullable=True),
)
_VERSION = sa.select(_VERSIONS.c.events).where(_VERSIONS.c.sender_id == sa.bindparam("sender_id"))
_LAST_MESSAGE = sa.select(_VERSIONS.c.last_message_id).where(_VERSIONS.c.sender_id == sa.bindparam("sender_id"))
_NEW_VERSION = _VERSIONS.insert()
_NEXT_VERSION = (
    _VERSIONS.update()
    .where(_VERSIONS.c.sender_id == sa.bindparam("conversation"), _VERSIONS.c.events == sa.bindparam("old"))
    .values(
        events=sa.bindparam("new"),
        last_message_id=sa.func.coalesce(sa.bindparam("message_id", type_=sa.String), _VERSIONS.c.last_message_id),
    )
)


@dataclass(frozen=True)
class _Stored:
    """What of a tracker is stored: its first ``events`` events, at conversation version
    ``version`` (None: the conversation had no row)."""

    events: int
    version: int | None


def _sqlite_file(args: tuple, kwargs: dict[str, Any]) -> str | None:
    """The SQLite file Rasa's store will open with these arguments, if it is one."""
    try:
        settings = inspect.signature(SQLTrackerStore.__init__).bind(None, *args, **kwargs).arguments
    except TypeError:  # Rasa's own call will say what is wrong
        return None
    if settings.get("dialect", "sqlite") != "sqlite" or settings.get("host"):
        return None
    return settings.get("db", "rasa.db")


def _durable_write_ahead_log(dbapi_connection: Any, _record: Any) -> None:
    """SQLite's write-ahead log: one fsync per saved turn instead of the rollback journal's
    several (sequential REST latency, README "Quality and speed"). ``synchronous=FULL``: a
    saved turn survives a power cut. Erasure empties the log (faqbot.core.privacy)."""
    dbapi_connection.execute("PRAGMA journal_mode=WAL")
    dbapi_connection.execute("PRAGMA synchronous=FULL")


class LeanSQLTrackerStore(SQLTrackerStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        db = _sqlite_file(args, kwargs)
        if db:
            private_file(db)  # 0600 before Rasa's store creates its tables in it
        super().__init__(*args, **kwargs)
        self._intents: frozenset[str] = frozenset()
        self._intents_of: Any = None
        rasa_engine = require_attribute(self, "engine", PATCH)
        # A failed statement's error (logged, raised) leaves out its values: event data, sender ids.
        options: dict[str, Any] = {"hide_parameters": True}
        if rasa_engine.dialect.name == "sqlite":
            # SQLAlchemy opens a new SQLite connection for every statement (NullPool);
            # keep a few open instead. All access is from Rasa's event-loop thread.
            options.update(poolclass=sa.pool.QueuePool, pool_size=2)
        else:
            # Rasa's settings (schema, pool size), and each connection checked before use:
            # after a database restart the pool's dead connections are replaced, not used.
            options.update(rasa.core.tracker_store.create_engine_kwargs(rasa_engine.url), pool_pre_ping=True)
        self.engine = sa.create_engine(rasa_engine.url, **options)
        if rasa_engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _durable_write_ahead_log)
        # Rasa's own queries (keys(), session_scope()) go through its sessionmaker: the same engine.
        require_attribute(self, "sessionmaker", PATCH).configure(bind=self.engine)
        rasa_engine.dispose()
        self._create_versions_table()

    def _create_versions_table(self) -> None:
        try:
            _VERSIONS.create(self.engine, checkfirst=True)
        except (sa.exc.ProgrammingError, sa.exc.IntegrityError):
            # Instances started at once may create it at the same time; one of them did.
            if not sa.inspect(self.engine).has_table(_VERSIONS.name):
                raise
        columns = {column["name"] for column in sa.inspect(self.engine).get_columns(_VERSIONS.name)}
        if "last_message_id" not in columns:  # the table as first made (without it)
            with self.engine.begin() as connection:
                connection.execute(sa.text(f"ALTER TABLE {_VERSIONS.name} ADD COLUMN last_message_id VARCHAR(64)"))

    async def answered(self, sender_id: str, message_id: str) -> list[dict[str, Any]] | None:
        """The bot's messages to the conversation's latest customer message, if that is the one
        with ``message_id`` (its turn is stored): for a request sent again. None otherwise."""
        try:
            with self.engine.connect() as connection:
                if connection.execute(_LAST_MESSAGE, {"sender_id": sender_id}).scalar() != message_id:
                    return None
        except sa.exc.DBAPIError as error:
            raise _unavailable("retrieve", error) from error
        tracker = await self.retrieve(sender_id)
        events = list(tracker.events) if tracker else []
        ids = [getattr(event, "message_id", None) for event in events]
        if message_id not in ids:
            return None
        turn = len(ids) - 1 - ids[::-1].index(message_id)
        replies = []
        for event in events[turn + 1 :]:
            if isinstance(event, BotUttered):
                replies.append({"text": event.text, **{key: value for key, value in event.data.items() if value}})
        return replies

    async def _retrieve(self, sender_id: str, fetch_events_from_all_sessions: bool) -> DialogueStateTracker | None:
        query = _ALL_EVENTS if fetch_events_from_all_sessions else _SESSION_EVENTS
        try:
            with self.engine.connect() as connection:
                # The version before the events: a turn stored in between is then among the
                # events but not in the version, and this tracker's save is refused (never the
                # other way round, which would store over that turn).
                version = connection.execute(_VERSION, {"sender_id": sender_id}).scalar()
                rows = connection.execute(query, {"sender_id": sender_id}).fetchall()
        except sa.exc.DBAPIError as error:
            raise _unavailable("retrieve", error) from error
        if not rows or not self.domain:
            return None
        events = [json.loads(decrypt(data, FIELD)) for (data,) in rows]
        tracker = DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
        setattr(tracker, STORED, _Stored(len(tracker.events), version))
        return tracker

    async def save(self, tracker: DialogueStateTracker) -> None:
        stored: _Stored | None = getattr(tracker, STORED, None)
        new_events = list(itertools.islice(tracker.events, stored.events if stored else 0, None))
        if not new_events:
            return
        sender_id = tracker.sender_id
        try:
            with self.engine.begin() as connection:
                message_id = next(
                    (event.message_id for event in reversed(new_events) if isinstance(event, UserUttered)), None
                )
                version = self._next_version(connection, sender_id, stored, len(new_events), message_id)
                connection.execute(_INSERT, [self._row(sender_id, event) for event in new_events])
        except TurnConflict:
            TRACKER_STORE_ERRORS.labels("save", "conflict").inc()
            raise
        except sa.exc.IntegrityError as error:  # the new conversation's version row: another instance's
            TRACKER_STORE_ERRORS.labels("save", "conflict").inc()
            raise TurnConflict("Gespräch wurde gleichzeitig von einer anderen Instanz begonnen") from error
        except sa.exc.DBAPIError as error:
            raise _unavailable("save", error) from error
        setattr(tracker, STORED, _Stored(len(tracker.events), version))
        if self.event_broker is not None:
            await self._stream_new_events(self.event_broker, new_events, sender_id)

    @staticmethod
    def _next_version(
        connection: sa.engine.Connection, sender_id: str, stored: _Stored | None, added: int, message_id: str | None
    ) -> int:
        """Moves the conversation's version on by ``added`` events if nobody else did since
        ``stored`` was read; raises TurnConflict otherwise. Returns the new version."""
        if stored is None:
            # A tracker this store did not load: a new conversation (Rasa creates one when
            # retrieve finds nothing). The version first, then whether anything is stored.
            version = connection.execute(_VERSION, {"sender_id": sender_id}).scalar()
            if connection.execute(_ANY_EVENT, {"sender_id": sender_id}).first() is not None:
                raise TurnConflict("Gespräch wurde gleichzeitig von einer anderen Instanz begonnen")
        else:
            version = stored.version
        if version is None:
            # No row yet (a new conversation, or one stored before the table existed). Of two
            # instances inserting it, the primary key refuses the second (IntegrityError).
            new = connection.execute(_COUNT, {"sender_id": sender_id}).scalar() + added
            connection.execute(_NEW_VERSION, {"sender_id": sender_id, "events": new, "last_message_id": message_id})
            return new
        swapped = connection.execute(
            _NEXT_VERSION, {"conversation": sender_id, "old": version, "new": version + added, "message_id": message_id}
        )
        if swapped.rowcount != 1:
            raise TurnConflict("Gespräch wurde inzwischen von einer anderen Instanz gespeichert")
        return version + added

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


def _unavailable(operation: str, error: sa.exc.DBAPIError) -> ServiceUnavailable:
    # OperationalError: the database is unreachable, restarting, out of connections.
    reason = "unavailable" if isinstance(error, sa.exc.OperationalError) else "database_error"
    TRACKER_STORE_ERRORS.labels(operation, reason).inc()
    return ServiceUnavailable(f"Gesprächsspeicher: {operation} fehlgeschlagen ({type(error.orig).__name__})")
