"""Liveness, readiness and metrics of the servers (README, "Mehrere Instanzen").

    GET /health/live    200 while the process serves; open
    GET /health/ready   200 if everything a request needs answers, else 503 naming what failed; open
    GET /metrics        Prometheus text format, for ``Authorization: Bearer <FAQBOT_METRICS_TOKEN>``
                        (the internal servers also accept their own secret)

The Rasa server and the NLU server (``faqbot.server.rasa_server``) and the action server
(``faqbot.server.action_server``) add them with ``add_endpoints``. The checks of readiness run
at the same time, each bounded by ``CHECK_TIMEOUT_S``; one that blocks (a database, Redis) runs
in a worker thread, never more than one of each at a time, so a hanging database cannot pile up
threads. The answers say in German what failed, never an address, a user name or an error text
(those may carry secrets); the log names the error's type. Each request's time goes into
``REQUEST_SECONDS``, labelled with its route's pattern (``/webhooks/support/tickets/<ticket_id:str>``),
never the path itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from faqbot.core import shared_secrets
from faqbot.core.metrics import REQUEST_SECONDS

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 1.0
METRICS_UNAUTHORIZED = "Zugriff verweigert: Die Metriken verlangen FAQBOT_METRICS_TOKEN (Authorization: Bearer)."
# Paths the servers' token checks let through: these check their callers themselves, or reveal nothing.
OPEN_PATHS = ("/health/live", "/health/ready", "/metrics")


@dataclass
class Check:
    """One condition of readiness: ``probe`` raises or returns False when it does not hold."""

    name: str  # its key in the answer
    failure: str  # German, for the answer: "Die Datenbank der Gespräche antwortet nicht."
    probe: Callable[[], Awaitable[Any]]


class InThread:
    """A blocking probe, run in a worker thread; while one still runs (a hanging database),
    the next caller waits for that one instead of starting another."""

    def __init__(self, probe: Callable[[], Any]) -> None:
        self.probe = probe
        self._running: asyncio.Future | None = None

    async def __call__(self) -> Any:
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(asyncio.to_thread(self.probe))
            # Read by whoever waits; after a timeout nobody does, and asyncio would complain.
            self._running.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await asyncio.shield(self._running)


def database_probe(url: str | sa.engine.URL) -> InThread:
    """``SELECT 1`` on a new connection: the database accepts connections and answers.
    Not through the store's pool: its SQLite connections belong to the event loop's thread."""
    url = sa.engine.make_url(url)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":  # libpq waits at least 2 s; the check gives up after 1
        connect_args = {"connect_timeout": 2, "options": f"-c statement_timeout={int(CHECK_TIMEOUT_S * 1000)}"}
    elif url.get_backend_name() == "sqlite":
        connect_args = {"timeout": CHECK_TIMEOUT_S}
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args)

    def probe() -> bool:
        if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
            raise FileNotFoundError("database file missing")  # connecting would create it
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True

    return InThread(probe)


def redis_probe(host: str, port: Any = None, db: Any = None, password: str | None = None) -> InThread:
    """PING, on a client of its own. ``host`` may be a redis:// URL."""
    import redis

    options: dict[str, Any] = {
        "password": password or None,  # ${REDIS_PASSWORD} set but empty: none
        "socket_connect_timeout": CHECK_TIMEOUT_S,
        "socket_timeout": CHECK_TIMEOUT_S,
    }
    if "://" in host:
        client = redis.Redis.from_url(host, **options)
    else:
        client = redis.Redis(host=host, port=int(port or 6379), db=int(db or 0), **options)
    return InThread(client.ping)


def http_probe(url: str) -> Callable[[], Awaitable[bool]]:
    """GET ``url`` answers 200."""

    async def probe() -> bool:
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CHECK_TIMEOUT_S)) as session:
            async with session.get(url) as response:
                return response.status == 200

    return probe


class Readiness:
    """The answer of /health/ready; logs when a check starts or stops failing."""

    def __init__(self, checks: Callable[[Any], list[Check]]) -> None:
        self.checks = checks  # of the app, at the time of the request
        self._failing: set[str] = set()

    async def answer(self, app: Any) -> tuple[int, dict[str, Any]]:
        checks = self.checks(app)
        reasons = await asyncio.gather(*(self._run(check) for check in checks))
        failed = {check.name: reason for check, reason in zip(checks, reasons, strict=True) if reason}
        for name in set(failed) - self._failing:
            logger.warning("Nicht bereit: %s", failed[name])
        for name in self._failing - set(failed):
            logger.info("Wieder bereit: %s", name)
        self._failing = set(failed)
        body: dict[str, Any] = {
            "status": "not_ready" if failed else "ready",
            "checks": {check.name: failed.get(check.name, "ok") for check in checks},
        }
        if failed:
            body["failed"] = list(failed)
            body["message"] = "Der Server ist nicht bereit: " + " ".join(failed.values())
        return (503 if failed else 200), body

    @staticmethod
    async def _run(check: Check) -> str | None:
        try:
            if await asyncio.wait_for(check.probe(), CHECK_TIMEOUT_S) is not False:
                return None
        except asyncio.TimeoutError:
            return f"{check.failure[:-1]} (keine Antwort innerhalb von {CHECK_TIMEOUT_S:.0f} s)."
        except Exception as error:  # its text may name hosts or users: the type only
            logger.debug("Bereitschaft %s: %s", check.name, type(error).__name__)
        return check.failure


async def start_timer(request: Any) -> None:
    request.ctx.faqbot_started = time.perf_counter()


def add_endpoints(app: Any, server: str, checks: Callable[[Any], list[Check]], metrics_tokens: list[str]) -> None:
    """/health/live, /health/ready and /metrics on a Sanic app, and the time of each request
    in REQUEST_SECONDS with ``server`` as label. ``checks(app)`` gives the checks of readiness;
    ``metrics_tokens`` may read the metrics."""
    from sanic import response

    readiness = Readiness(checks)

    async def live(request: Any) -> Any:
        return response.json({"status": "ok"})

    async def ready(request: Any) -> Any:
        status, body = await readiness.answer(request.app)
        return response.json(body, status=status)

    async def metrics(request: Any) -> Any:
        given = shared_secrets.bearer_token(request.headers.get("authorization"))
        if not any(shared_secrets.matches(given, token) for token in metrics_tokens):
            logger.warning("Metriken: Anfrage ohne gültigen Token von %s abgewiesen", request.ip)  # never the token
            return response.json(
                {"error": "unauthorized", "message": METRICS_UNAUTHORIZED},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return response.raw(generate_latest(), content_type=CONTENT_TYPE_LATEST)

    async def observe(request: Any, answer: Any) -> None:
        started = getattr(request.ctx, "faqbot_started", None)
        if started is None or request.route is None:  # refused before routing (404) or timing
            return
        REQUEST_SECONDS.labels(server, f"/{request.route.path}", str(answer.status)).observe(
            time.perf_counter() - started
        )

    app.add_route(live, "/health/live", methods=["GET"], name="faqbot_health_live")
    app.add_route(ready, "/health/ready", methods=["GET"], name="faqbot_health_ready")
    app.add_route(metrics, "/metrics", methods=["GET"], name="faqbot_metrics")
    app.register_middleware(start_timer, "request")  # once: a server that needs it earlier registered it
    app.register_middleware(observe, "response")
