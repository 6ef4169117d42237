"""Shared fixtures: the trained model and the real servers, started as `make run` does.

Test tiers (pyproject.toml): a test marked ``browser`` or ``training`` keeps that mark;
every other test is ``e2e`` if it needs the trained model (the ``model_path`` fixture,
also through ``bot``) and ``unit`` if not. So ``make test-unit`` can never start a
training run or a browser by accident.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import read_table
from sanic import Sanic

from faqbot.cluster.components import PostgreSQL, Redis
from faqbot.core.known_warnings import KNOWN_WARNINGS
from faqbot.server.serve import BotServers
from faqbot.tools import train

EXPLICIT_TIERS = ("browser", "training", "components")
# Fixtures that start PostgreSQL, Redis or nginx: their tests are in the `components` tier.
COMPONENT_FIXTURES = {"postgres", "postgres_url", "redis", "redis_url"}


def pytest_configure(config) -> None:
    # pytest resets the warning filters for each test: the same known third-party warnings
    # as at the servers' and tools' start-up (one list, faqbot.core.known_warnings), no more.
    for message, module in KNOWN_WARNINGS:
        config.addinivalue_line("filterwarnings", f"ignore:{message}:Warning:{module}")


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        explicit = [name for name in EXPLICIT_TIERS if item.get_closest_marker(name)]
        if len(explicit) > 1:
            raise pytest.UsageError(f"{item.nodeid}: more than one tier ({', '.join(explicit)})")
        if item.get_closest_marker("unit") or item.get_closest_marker("e2e"):
            raise pytest.UsageError(f"{item.nodeid}: unit/e2e are derived from the fixtures, do not set them")
        if not explicit and COMPONENT_FIXTURES & set(item.fixturenames):
            item.add_marker("components")
        elif not explicit:
            item.add_marker("e2e" if "model_path" in item.fixturenames else "unit")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres(tmp_path_factory) -> Iterator[PostgreSQL]:
    """A real PostgreSQL server on loopback for the whole run, its data in a temp dir."""
    with PostgreSQL(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgreSQL) -> str:
    """A new, empty database of that server for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.query(f"CREATE DATABASE {name}")
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def redis(tmp_path_factory) -> Iterator[Redis]:
    """A real Redis server on loopback for the whole run."""
    with Redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis: Redis) -> str:
    """That server, emptied for one test."""
    subprocess.run(["redis-cli", "-p", str(redis.port), "flushall"], check=True, capture_output=True)
    return redis.url


@pytest.fixture(scope="session")
def model_path() -> Path:
    return train.train()  # reuses the cached model when data and config are unchanged


class Bot:
    """A client of the running bot, talking REST as a support channel would."""

    def __init__(self, servers: BotServers) -> None:
        self.servers = servers
        self.webhook = f"{servers.url}/webhooks/rest/webhook"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {servers.rest_token}"  # an integration

    def send(self, sender: str, message: str, metadata: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        body = {"sender": sender, "message": message, **({"metadata": metadata} if metadata else {})}
        response = self.session.post(self.webhook, json=body, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def tickets(self) -> list[dict[str, Any]]:
        """The stored tickets, decrypted."""
        return read_table(self.servers.var_dir / "tickets.db", "tickets", "ORDER BY number")

    def tracker_events(self, sender: str) -> list[dict[str, Any]]:
        """The conversation's stored events, decrypted."""
        return read_table(self.servers.var_dir / "tracker.db", "events", "WHERE sender_id = ? ORDER BY id", (sender,))

    def alive(self) -> bool:
        return all(process.poll() is None for process in self.servers.processes)


@contextmanager
def running(servers: BotServers) -> Iterator[BotServers]:
    """Start the servers, wait until they answer (showing their logs if not), stop them after."""
    servers.start()
    try:
        try:
            servers.wait_ready()
        except Exception:
            for log in sorted(servers.log_dir.glob("*.log")) if servers.log_dir else []:
                print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-4000:]}")
            raise
        yield servers
    finally:
        servers.stop()


def bot_servers(model_path: Path, var_dir: Path, **options: Any) -> BotServers:
    """The bot's servers as `make run` starts them, on free ports, with their data and logs in var_dir."""
    ports = {"port": free_port(), "action_port": free_port(), "nlu_port": free_port()}
    return BotServers(**ports, var_dir=var_dir, model=model_path, log_dir=var_dir / "logs", **options)


@pytest.fixture(scope="session")
def bot(model_path: Path, tmp_path_factory) -> Bot:
    with running(bot_servers(model_path, tmp_path_factory.mktemp("var"))) as servers:
        yield Bot(servers)


@pytest.fixture
def serve(monkeypatch):
    """serving(); in Sanic's test mode, which keeps its start-up rewriting of its own
    code (TouchUp) repeatable for several apps in one process."""
    monkeypatch.setattr(Sanic, "test_mode", True)
    return serving


@asynccontextmanager
async def serving(channel: Any, on_new_message: Any) -> AsyncIterator[str]:
    """The channel's blueprint in a real Sanic server, at the URL Rasa gives it
    (rasa.core.channels.channel.register), with on_new_message in place of Rasa's agent."""
    app = Sanic(f"test_{uuid.uuid4().hex}", configure_logging=False)
    app.blueprint(channel.blueprint(on_new_message), url_prefix=f"/webhooks/{channel.url_prefix()}")
    port = free_port()
    server = await app.create_server("127.0.0.1", port, return_asyncio_server=True, access_log=False)
    await server.startup()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()
        # What the server left running (engine.io's pings, closing websockets) ends with it.
        leftovers = asyncio.all_tasks() - {asyncio.current_task()}
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
