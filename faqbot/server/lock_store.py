"""One turn of a conversation at a time across all Rasa instances: a lock per conversation in Redis.

Rasa's ``RedisLockStore`` reads, changes and writes its ticket list in three steps (two
instances can both think they hold the lock, RasaHQ/rasa#9213), looks again only once per
second, and a crashed holder's ticket blocks the conversation for 60 s. This store replaces
Rasa's ``LockStore.lock`` (the async context manager Rasa's agent, Rasa's HTTP API and the
support channel take around each turn) with a plain Redis lock:

* taken with ``SET key token NX PX ttl``: one atomic command, so only one instance gets it;
* released with a Lua compare-and-delete: only by its holder (a lock that expired and was
  taken by another instance is not deleted);
* renewed while the turn runs (a background task, Lua compare-and-pexpire every
  ``RENEW_EVERY_S``), so a long turn keeps it, while the lock of a killed instance expires
  after at most ``TTL_MS``. A turn that runs longer than Rasa's ``lock_lifetime`` (60 s,
  ``TICKET_LOCK_LIFETIME``) stops renewing: a hung turn cannot block its conversation;
* waited for by trying again every ``POLL_S``.

Should a turn lose its lock anyway (renewal starved, Redis restarted), the tracker store's
version check (faqbot.server.tracker_store) refuses its save: nothing is overwritten.
Redis unreachable, or a wait longer than ``max_wait_seconds``: ``ServiceUnavailable``, the
caller gets a 503 and sends again (faqbot.server.failures).

endpoints.yml::

    lock_store:
      type: faqbot.server.lock_store.AtomicRedisLockStore
      url: <host>            # or redis://host:port/db
      port: 6379
      password: ""           # empty: none
      db: 1
      key_prefix: faqbot     # optional, letters and digits
      max_wait_seconds: 30   # optional
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import rasa.core.lock_store
import redis.asyncio
from rasa.core.lock_store import LOCK_LIFETIME, LockStore
from rasa.utils.endpoints import EndpointConfig
from redis.exceptions import RedisError

from faqbot.core.metrics import LOCK_ERRORS, LOCK_WAIT_SECONDS
from faqbot.server import patches
from faqbot.server.failures import ServiceUnavailable
from faqbot.server.patches import require_attribute, require_version

PATCH = "faqbot.server.lock_store.AtomicRedisLockStore"

# A killed instance's lock is free after at most TTL_MS (+ one POLL_S): well under the 5 s a
# conversation may be blocked, with room for the turn that then runs. Renewed every second, so
# a turn keeps its lock even if its event loop is busy for up to 2 s (Rasa runs the model's
# prediction in the event loop, and under load the renewal waits for other turns' steps); a
# lock lost anyway ends in a conflict (503), never in a lost turn.
TTL_MS = 3_000
RENEW_EVERY_S = 1.0
# A waiting turn tries again every 20 ms: a freed lock is taken within 20 ms plus one round
# trip to Redis (about 50 commands per second per waiting turn, nothing for Redis).
POLL_S = 0.02
# Longer than a queue of ten turns of one conversation needs, shorter than nginx's
# proxy_read_timeout (60 s): the caller gets our German 503 rather than a gateway timeout.
MAX_WAIT_S = 30.0
# An unreachable Redis fails the turn within a second or two instead of hanging it.
CONNECT_TIMEOUT_S = 1.0
COMMAND_TIMEOUT_S = 2.0
KEY = "faqbot:lock:"  # not Rasa's "lock:": a Rasa RedisLockStore's ticket list never expires

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
SETTINGS = {"port", "db", "password", "key_prefix", "max_wait_seconds"}

logger = logging.getLogger(__name__)


def check_targets() -> None:
    # Rasa creates the store from endpoints.yml with ``endpoint_config=`` and calls only
    # ``lock()`` (agent.handle_message, rasa.server, processor.handle_reminder).
    require_version("rasa", patches.RASA_VERSION, PATCH)
    require_attribute(LockStore, "lock", PATCH)
    require_attribute(rasa.core.lock_store, "_load_from_module_name_in_endpoint_config", PATCH)


check_targets()


class AtomicRedisLockStore(LockStore):
    def __init__(self, endpoint_config: EndpointConfig) -> None:
        settings = dict(endpoint_config.kwargs)
        unknown = set(settings) - SETTINGS
        if unknown:
            raise ValueError(f"{PATCH}: unbekannte Einstellungen {sorted(unknown)}, erlaubt sind {sorted(SETTINGS)}")
        key_prefix = settings.get("key_prefix") or ""
        if key_prefix and not str(key_prefix).isalnum():
            raise ValueError(f"{PATCH}: key_prefix darf nur Buchstaben und Ziffern enthalten: {key_prefix!r}")
        self.key_prefix = f"{key_prefix}:{KEY}" if key_prefix else KEY
        self.max_wait_s = float(settings.get("max_wait_seconds") or MAX_WAIT_S)
        url = endpoint_config.url or "localhost"
        options: dict[str, Any] = {
            "password": settings.get("password") or None,  # ${REDIS_PASSWORD} set but empty: none
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "socket_timeout": COMMAND_TIMEOUT_S,
        }
        if "://" in url:
            self._connect = lambda: redis.asyncio.Redis.from_url(url, **options)
        else:
            options.update(host=url, port=int(settings.get("port") or 6379), db=int(settings.get("db") or 0))
            self._connect = lambda: redis.asyncio.Redis(**options)
        self._client: redis.asyncio.Redis | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        super().__init__()

    def _redis(self) -> redis.asyncio.Redis:
        # redis-py's connections belong to the event loop that opened them (tests, `rasa shell`
        # and the server may each run their own).
        loop = asyncio.get_running_loop()
        if self._client_loop is not loop:
            self._client, self._client_loop = self._connect(), loop
        return self._client

    @contextlib.asynccontextmanager
    async def lock(
        self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME, wait_time_in_seconds: float = POLL_S
    ) -> AsyncIterator[None]:
        """Hold the conversation's lock for the ``async with`` block. ``lock_lifetime``: the
        longest a turn keeps it; ``wait_time_in_seconds``: how often a waiting turn tries again."""
        client = self._redis()
        key = self.key_prefix + conversation_id
        token = secrets.token_hex(16)
        await self._acquire(client, key, token, wait_time_in_seconds)
        renewal = asyncio.create_task(self._keep(client, key, token, conversation_id, lock_lifetime))
        try:
            yield
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            await self._release(client, key, token, conversation_id)

    async def _acquire(self, client: redis.asyncio.Redis, key: str, token: str, poll_s: float) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            try:
                if await client.set(key, token, nx=True, px=TTL_MS):
                    LOCK_WAIT_SECONDS.observe(loop.time() - started)
                    return
            except RedisError as error:
                LOCK_ERRORS.labels("redis_unavailable").inc()
                raise ServiceUnavailable(f"Sperrspeicher (Redis) nicht erreichbar: {error}") from error
            waited = loop.time() - started
            if waited >= self.max_wait_s:
                LOCK_WAIT_SECONDS.observe(waited)
                LOCK_ERRORS.labels("wait_timeout").inc()
                raise ServiceUnavailable(f"Gespräch nach {waited:.0f} s noch von einem anderen Zug gesperrt")
            await asyncio.sleep(poll_s)

    async def _keep(
        self, client: redis.asyncio.Redis, key: str, token: str, conversation_id: str, lifetime: float
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + lifetime
        while True:
            await asyncio.sleep(RENEW_EVERY_S)
            if loop.time() > deadline:
                LOCK_ERRORS.labels("held_too_long").inc()
                logger.error(
                    "Zug im Gespräch %s läuft länger als %.0f s: Sperre wird nicht mehr verlängert",
                    conversation_id,
                    lifetime,
                )
                return
            try:
                renewed = await client.eval(_RENEW, 1, key, token, TTL_MS)
            except RedisError as error:  # tried again in a second; the lock lasts TTL_MS
                LOCK_ERRORS.labels("renew_failed").inc()
                logger.warning("Sperre für Gespräch %s nicht verlängert: %s", conversation_id, error)
                continue
            if not renewed:
                # Expired (event loop too busy, Redis restarted) and perhaps taken by another
                # instance: this turn's save fails with TurnConflict, nothing is overwritten.
                LOCK_ERRORS.labels("lost").inc()
                logger.error("Sperre für Gespräch %s verloren, während der Zug noch lief", conversation_id)
                return

    async def _release(self, client: redis.asyncio.Redis, key: str, token: str, conversation_id: str) -> None:
        try:
            await client.eval(_RELEASE, 1, key, token)
        except RedisError as error:
            # Not raised: the turn is already stored, and the lock expires within TTL_MS.
            LOCK_ERRORS.labels("release_failed").inc()
            logger.warning("Sperre für Gespräch %s nicht freigegeben (läuft ab): %s", conversation_id, error)
