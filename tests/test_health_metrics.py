"""Liveness, readiness and metrics of the real servers (faqbot.server.health).

The bot runs as ``make run`` starts it, but as in production: conversations in PostgreSQL,
locks in Redis (Rasa's RedisLockStore), the NLU server named by ``FAQBOT_NLU_URL`` instead of
the endpoints file. PostgreSQL and Redis are this module's own, so they can be stopped.
"""

from __future__ import annotations

import os
import re
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from conftest import Bot, free_port, running
from helpers import texts
from ruamel.yaml import YAML
from test_rest_conversations import AMBIGUOUS

from faqbot.cluster.components import PostgreSQL, Redis
from faqbot.core.knowledge import load
from faqbot.core.paths import PROJECT_DIR
from faqbot.server.health import CHECK_TIMEOUT_S
from faqbot.server.serve import BotServers

pytestmark = pytest.mark.components

SUPPORT_TOKEN = "support-token-for-the-health-tests-0123456789"
EVERYTHING = {"model", "tracker_store", "lock_store", "action_server", "nlu_server"}


class ProductionLikeServers(BotServers):
    """``make run``'s servers on PostgreSQL and Redis, the NLU server from FAQBOT_NLU_URL."""

    def __init__(self, postgres: PostgreSQL, redis: Redis, **options) -> None:
        super().__init__(**options)
        self.postgres, self.redis = postgres, redis
        self.env["FAQBOT_NLU_URL"] = self.nlu_url

    def endpoints_file(self) -> Path:
        yaml = YAML()
        endpoints = yaml.load((PROJECT_DIR / "endpoints.yml").read_text(encoding="utf-8"))
        endpoints["action_endpoint"]["url"] = f"{self.action_url}/webhook"
        endpoints["tracker_store"] = {
            "type": "faqbot.server.tracker_store.LeanSQLTrackerStore",
            "dialect": "postgresql",
            "url": "127.0.0.1",
            "port": self.postgres.port,
            "db": self.postgres.database,
            "username": self.postgres.user,
        }
        endpoints["lock_store"] = {"type": "redis", "url": "127.0.0.1", "port": self.redis.port, "db": 1}
        endpoints["event_broker"] = {"type": "faqbot.server.review_broker.ReviewQueueBroker", "url": self.postgres.url}
        path = self.var_dir / "endpoints.yml"
        with path.open("w", encoding="utf-8") as handle:
            yaml.dump(endpoints, handle)  # no nlu endpoint: FAQBOT_NLU_URL names it
        return path


@pytest.fixture(scope="module")
def servers(model_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("health")
    with PostgreSQL(folder / "postgres") as postgres, Redis(folder / "redis") as redis:
        ports = {"port": free_port(), "action_port": free_port(), "nlu_port": free_port()}
        # Several instances share tickets and the review queue as well (channels/support.py checks it).
        env = {"FAQBOT_SUPPORT_TOKEN": SUPPORT_TOKEN, "FAQBOT_TICKET_DB_URL": postgres.url}
        options = {"var_dir": folder, "model": model_path, "log_dir": folder / "logs", "env": env}
        with running(ProductionLikeServers(postgres, redis, **ports, **options)) as started:
            yield started


def ready(url: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    answer = requests.get(f"{url}/health/ready", timeout=10)
    return answer.status_code, answer.json(), time.monotonic() - started


def until_ready(url: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        status, body, _ = ready(url)
        if status == 200:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


@contextmanager
def paused(process):
    """The server hangs: it accepts connections but answers nothing."""
    os.killpg(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGCONT)


def test_everything_answers(servers):
    for url in (servers.url, servers.action_url, servers.nlu_url):
        assert requests.get(f"{url}/health/live", timeout=10).json() == {"status": "ok"}
    assert until_ready(servers.url) == {"status": "ready", "checks": dict.fromkeys(EVERYTHING, "ok")}
    assert until_ready(servers.action_url) == {"status": "ready", "checks": {"ticket_store": "ok"}}
    assert until_ready(servers.nlu_url) == {"status": "ready", "checks": {"model": "ok"}}


def assert_not_ready(servers, failed: str, reason: str) -> None:
    status, body, seconds = ready(servers.url)
    assert status == 503, body
    assert body["status"] == "not_ready" and body["failed"] == [failed], body
    assert body["checks"][failed] == reason and reason in body["message"], body
    assert {name for name, value in body["checks"].items() if value == "ok"} == EVERYTHING - {failed}
    assert seconds < CHECK_TIMEOUT_S + 1.0  # every check is bounded, and they run at the same time
    # No addresses, users or secrets in the answer.
    for secret in (str(servers.postgres.port), str(servers.redis.port), "postgres", servers.env["FAQBOT_NLU_TOKEN"]):
        assert secret not in str(body)


def test_ready_names_the_store_that_does_not_answer(servers):
    until_ready(servers.url)
    servers.redis.stop()
    try:
        assert_not_ready(servers, "lock_store", "Redis (Sperren der Gespräche) antwortet nicht.")
    finally:
        servers.redis.start()
    until_ready(servers.url)
    servers.postgres.stop_server("immediate")
    try:
        assert_not_ready(servers, "tracker_store", "Die Datenbank der Gespräche antwortet nicht.")
    finally:
        servers.postgres.start_server()
    until_ready(servers.url)
    status, body, _ = ready(servers.action_url)
    assert status == 200, body


def test_ready_gives_up_on_a_server_that_hangs(servers):
    until_ready(servers.url)
    with paused(servers.process("actions")):
        assert_not_ready(
            servers, "action_server", "Der Action-Server antwortet nicht (keine Antwort innerhalb von 1 s)."
        )
    until_ready(servers.url)
    # The Rasa server sends the NLU to the server FAQBOT_NLU_URL names.
    with paused(servers.process("nlu")):
        assert_not_ready(servers, "nlu_server", "Der NLU-Server antwortet nicht (keine Antwort innerhalb von 1 s).")
    until_ready(servers.url)


def metrics(url: str, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{url}/metrics", headers=headers, timeout=10)


def value(text: str, name: str, **labels: str) -> float:
    """A sample of a metric in Prometheus text format, whatever the order of its labels."""
    for line in text.splitlines():
        sample = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if sample and set(labels.items()) <= set(re.findall(r'(\w+)="([^"]*)"', sample.group(1))):
            return float(sample.group(2))
    found = [line for line in text.splitlines() if line.startswith(name)]
    raise AssertionError(f"{name} {labels} not in the metrics: {found}")


def test_metrics_need_their_token_and_count_routes_and_faq_outcomes(servers):
    token = servers.env["FAQBOT_METRICS_TOKEN"]
    for url in (servers.url, servers.action_url, servers.nlu_url):
        refused = metrics(url, None)
        assert refused.status_code == 401 and "FAQBOT_METRICS_TOKEN" in refused.json()["message"]
        assert metrics(url, "falsch" * 8).status_code == 401
    # The internal servers also take their own secret.
    assert metrics(servers.action_url, servers.env["FAQBOT_ACTION_TOKEN"]).status_code == 200
    assert metrics(servers.nlu_url, servers.env["FAQBOT_NLU_TOKEN"]).status_code == 200
    assert metrics(servers.url, servers.env["FAQBOT_NLU_TOKEN"]).status_code == 401

    until_ready(servers.url)
    bot, entry = Bot(servers), load()["erhalte_rechnung"]
    assert texts(bot.send("kunde-metriken", entry.question)) == [entry.answer]
    bot.send("kunde-metriken", AMBIGUOUS)  # "Meinten Sie …?"
    support = requests.get(
        f"{servers.url}/webhooks/support/tickets/ticket-gibt-es-nicht",
        headers={"Authorization": f"Bearer {SUPPORT_TOKEN}"},
        timeout=10,
    )
    assert support.status_code == 404

    rasa = metrics(servers.url, token)
    assert rasa.status_code == 200 and rasa.headers["content-type"].startswith("text/plain")
    webhook = {"server": "rasa", "route": "/webhooks/rest/webhook", "status": "200"}
    assert value(rasa.text, "faqbot_request_seconds_count", **webhook) >= 2
    # The route's pattern, never the path with the id.
    ticket = {"server": "rasa", "route": "/webhooks/support/tickets/<ticket_id:str>", "status": "404"}
    assert value(rasa.text, "faqbot_request_seconds_count", **ticket) == 1
    assert "ticket-gibt-es-nicht" not in rasa.text
    nlu = metrics(servers.nlu_url, token).text
    assert value(nlu, "faqbot_request_seconds_count", server="nlu", route="/model/parse", status="200") >= 2
    actions = metrics(servers.action_url, token).text
    assert value(actions, "faqbot_request_seconds_count", server="actions", route="/webhook", status="200") >= 2
    assert value(actions, "faqbot_faq_outcomes_total", faq=entry.id, outcome="answer") == 1
    assert (
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in actions.splitlines()
            if line.startswith("faqbot_faq_outcomes_total{") and 'outcome="clarification"' in line
        )
        == 1
    )
