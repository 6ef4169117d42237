"""Several Rasa instances and action servers on one database (issue 13): the review queue,
the one open ticket per conversation and the outbox are decided by the database, not by a
process. Two stores, brokers or workers stand for two servers; they run at once (threads),
on a real PostgreSQL (the ``postgres_url`` fixture) or one SQLite file."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import free_port
from prometheus_client import REGISTRY
from rasa.core.agent import Agent
from rasa.shared.core.domain import Domain
from sanic import Sanic

from faqbot.core import review_store
from faqbot.core.delivery import DeliveryConfig, DeliveryWorker
from faqbot.core.paths import PROJECT_DIR
from faqbot.core.review_store import ReviewStore, sender_hash
from faqbot.core.tickets import TicketStore, tickets
from faqbot.server.channels import support
from faqbot.server.review_broker import ReviewQueueBroker, judged_event
from faqbot.server.tracker_store import LeanSQLTrackerStore

DOMAIN = Domain.load(PROJECT_DIR / "domain.yml")


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def run_together(*jobs: Callable[[], None]) -> None:
    """The jobs in threads started at the same moment, as servers would run them."""
    start, errors = threading.Barrier(len(jobs)), []

    def run(job: Callable[[], None]) -> None:
        start.wait()
        try:
            job()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


# --- the review queue: two Rasa instances, the turns of a conversation alternating ---


def user(text: str, intent: str, confidence: float) -> dict:
    return {
        "event": "user",
        "text": text,
        "parse_data": {
            "intent": {"name": intent, "confidence": confidence},
            "intent_ranking": [{"name": intent, "confidence": confidence}],
        },
    }


LISTEN = {"event": "action", "name": "action_listen"}
FALLBACK = {"event": "action", "name": "action_handle_fallback"}
ESCALATION = {"event": "bot", "text": "Ticket T-1", "data": {"custom": {"escalation": {"ticket_id": "T-1"}}}}
# Per conversation its turns; turn 1 reaches the first instance, turn 2 the second, and so on.
CONVERSATIONS = {
    "oos": [
        [user("Wie wird das Wetter morgen in Kiel?", "out_of_scope", 0.91), FALLBACK, LISTEN],
        [user("Nein, danke", "deny", 0.95), LISTEN],
    ],
    "clarify": [
        [
            user("geht das offline", "faq_offline", 0.52),
            {"event": "bot", "text": "Meinten Sie …?", "data": {"buttons": [{"payload": "/faq_offline"}]}},
            LISTEN,
        ],
        [
            user("/faq_offline", "faq_offline", 1.0),
            {"event": "bot", "text": "Ja.", "data": {"custom": {"faq_id": "offline"}}},
            LISTEN,
        ],
    ],
    "low": [
        [
            user("rechnung zahlung", "faq_rechnung", 0.7),
            {"event": "bot", "text": "So geht es.", "data": {"custom": {"faq_id": "rechnung"}}},
            LISTEN,
        ],
        [user("Ich möchte mit einem Mitarbeiter sprechen", "human_handoff", 0.97), ESCALATION, LISTEN],
    ],
    "form": [  # the form's state is kept between the instances too
        [
            user("Ich will mit einem Menschen reden", "human_handoff", 0.97),
            {"event": "active_loop", "name": "escalation_form"},
            {"event": "bot", "text": "Worum geht es?", "data": {}},
            LISTEN,
        ],
        [
            user("anna@example.org wegen meinem Vertrag", "nlu_fallback", 0.6),
            {"event": "active_loop", "name": None},
            ESCALATION,
            LISTEN,
        ],
    ],
    "two": [
        [user("Mein Drucker macht Geräusche", "nlu_fallback", 0.4), FALLBACK, LISTEN],
        [user("danke", "thank", 0.96), LISTEN],
        [
            user("kann ich offline arbeiten", "faq_offline", 0.5),
            {"event": "bot", "text": "Meinten Sie …?", "data": {"buttons": [{"payload": "/faq_offline"}]}},
            LISTEN,
        ],
        [user("/out_of_scope", "out_of_scope", 1.0), LISTEN],
    ],
}
EXPECTED = {
    "oos": [("Wie wird das Wetter morgen in Kiel?", "out_of_scope", "declined")],
    "clarify": [("geht das offline", "clarification", "faq:offline")],
    "low": [("rechnung zahlung", "low_confidence", "escalated")],
    "form": [("Ich will mit einem Menschen reden", "escalation", "escalated")],
    "two": [
        ("Mein Drucker macht Geräusche", "fallback", "thanks"),
        ("kann ich offline arbeiten", "clarification", "none_of_these"),
    ],
}


def entries_by_conversation(store: ReviewStore) -> dict[str, list[tuple]]:
    names = {sender_hash(name): name for name in CONVERSATIONS}
    found: dict[str, list[tuple]] = {}
    for entry in store.entries(status=None):
        found.setdefault(names.get(entry.sender, entry.sender), []).append((entry.text, entry.kind, entry.outcome))
    return found


def two_instances_take_turns(where: str | Path, turn_gap: Callable[[list[ReviewQueueBroker], list[int]], None]) -> None:
    instances, handed_over = [ReviewQueueBroker(where), ReviewQueueBroker(where)], [0, 0]
    store = ReviewStore(where)
    try:
        for number in range(max(len(turns) for turns in CONVERSATIONS.values())):
            for conversation, turns in CONVERSATIONS.items():
                for event in turns[number] if number < len(turns) else []:
                    instances[number % 2].publish({"sender_id": conversation, **event})
                    handed_over[number % 2] += judged_event({"sender_id": conversation, **event}) is not None
            turn_gap(instances, handed_over)  # until the customers' next messages
        assert wait_for(lambda: entries_by_conversation(store) == EXPECTED), entries_by_conversation(store)
    finally:
        for broker in instances:
            asyncio.run(broker.close())
    assert entries_by_conversation(store) == EXPECTED  # no entry twice after both folded at the end
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(review_store.inbox)).scalar() == 0
        held = connection.execute(sa.select(review_store.conversations.c.state)).scalars().all()
    assert len(held) == len(CONVERSATIONS) and not any("Drucker" in state for state in held)  # encrypted
    store.close()


def test_two_rasa_instances_taking_turns_record_each_entry_once_with_its_outcome(postgres_url):
    # 50 ms between the turns: an instance may write its turn after the next turn's instance
    # (it writes every 0.1 s); the settling time keeps the order.
    two_instances_take_turns(postgres_url, lambda instances, handed_over: time.sleep(0.05))


def test_two_rasa_instances_on_one_sqlite_file_too(tmp_path):
    """Without a shared database there is one instance (nothing waits to settle): a turn is
    written before the next one arrives, the conversation's state is taken over all the same."""

    def written(instances: list[ReviewQueueBroker], handed_over: list[int]) -> None:
        assert wait_for(lambda: [broker.writer.written for broker in instances] == handed_over)

    two_instances_take_turns(tmp_path / "review.db", written)


def test_only_one_instance_folds_at_a_time(postgres_url):
    first, second = ReviewStore(postgres_url), ReviewStore(postgres_url)
    first.append([(sender_hash("kunde"), time.time() - 5, {"event": "action", "name": "action_listen"})])
    with first.consume(settle_s=0, limit=10) as mine:
        assert len(mine.events) == 1
        with second.consume(settle_s=0, limit=10) as theirs:
            assert theirs is None  # skipped, not waited for
    with second.consume(settle_s=0, limit=10) as theirs:
        assert theirs is not None and theirs.events == []  # folded by the first
    with first.engine.connect() as connection:
        holder = connection.execute(sa.select(review_store.consumer.c.holder)).scalar()
    assert holder == f"{socket.gethostname()}:{os.getpid()}"
    first.close()
    second.close()


def test_privacy_and_the_trainer_work_on_the_shared_queue(postgres_url, monkeypatch):
    broker = ReviewQueueBroker(postgres_url)
    for event in CONVERSATIONS["oos"][0] + [user("Und morgen früh?", "out_of_scope", 0.9)]:  # the last one unjudged
        broker.publish({"sender_id": "oos", **event})
    asyncio.run(broker.close())
    store = ReviewStore(postgres_url)
    entries, waiting = store.export([sender_hash("oos")])
    assert [entry["text"] for entry in entries] == ["Wie wird das Wetter morgen in Kiel?"] and "sender" not in entries[
        0
    ]
    assert waiting == ["Wie wird das Wetter morgen in Kiel?", "Und morgen früh?"]  # held for the next turn
    # The trainer reads the same database (FAQBOT_REVIEW_DB_URL), not a file of its host.
    trainer = subprocess.run(
        [sys.executable, "-m", "faqbot.tools.trainer", "review"],
        input="q\n",
        capture_output=True,
        text=True,
        cwd=PROJECT_DIR,
        env={**os.environ, "FAQBOT_REVIEW_DB_URL": postgres_url, "FAQBOT_REVIEW_DB": "/nicht/da.db"},
        timeout=120,
    )
    assert trainer.returncode == 0 and "„Wie wird das Wetter morgen in Kiel?“" in trainer.stdout, trainer.stderr
    assert store.erase([sender_hash("oos")]) == (1, [])
    assert store.export([sender_hash("oos")]) == ([], [])
    store.close()


# --- one open ticket per conversation ---


def open_tickets_at_once(url: str) -> None:
    servers = [TicketStore(url), TicketStore(url)]
    senders = [f"kunde-{number}" for number in range(20)]
    created: dict[int, list] = {0: [], 1: []}

    def escalate(number: int) -> Callable[[], None]:
        def job() -> None:
            for sender in senders:  # both on the same conversation at the same moment
                created[number].append(
                    servers[number].create(sender, "rest", "Frage", None, None, [], targets=["webhook"])
                )

        return job

    run_together(escalate(0), escalate(1))
    for first, second in zip(created[0], created[1], strict=True):
        assert first.ticket_id == second.ticket_id and first.is_new != second.is_new
    with servers[0].engine.connect() as connection:
        per_sender = connection.execute(
            sa.select(tickets.c.sender_id, sa.func.count()).group_by(tickets.c.sender_id)
        ).all()
    assert sorted(per_sender) == sorted((sender, 1) for sender in senders)
    assert all(len(servers[0].deliveries_for(ticket.ticket_id)) == 1 for ticket in created[0])
    # Once closed, the conversation can open a new one.
    servers[0].close(created[0][0].ticket_id)
    again = servers[1].create(senders[0], "rest", "Noch eine Frage", None, None, [])
    assert again.is_new and again.ticket_id != created[0][0].ticket_id


def test_two_action_servers_open_one_ticket_per_conversation(postgres_url):
    open_tickets_at_once(postgres_url)


def test_two_action_servers_on_one_sqlite_file_open_one_ticket_per_conversation(tmp_path):
    open_tickets_at_once(f"sqlite:///{tmp_path / 'tickets.db'}")


def test_duplicate_open_tickets_of_an_older_version_are_closed_for_the_new_index(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'tickets.db'}"
    older = TicketStore(url)
    with older.engine.begin() as connection:  # as an earlier version left it: no index, two open
        connection.exec_driver_sql("DROP INDEX tickets_one_open_per_sender")
        for number in (1, 2):
            connection.execute(
                tickets.insert().values(
                    ticket_id=f"T-{number}", sender_id="kunde", created_at="2026-01-01", transcript="[]", status="open"
                )
            )
    older.engine.dispose()
    store = TicketStore(url)
    assert store.open_ticket_for("kunde").ticket_id == "T-2"  # the newest, which the bot added to
    assert [ticket.ticket_id for ticket in store.open_tickets()] == ["T-2"]
    assert "T-1" in caplog.text
    with pytest.raises(sa.exc.IntegrityError):  # the database decides now
        with store.engine.begin() as connection:
            connection.execute(
                tickets.insert().values(sender_id="kunde", created_at="2026-01-02", transcript="[]", status="open")
            )


# --- the outbox ---


class Receiver:
    """A help-desk webhook on loopback that counts what it receives. ``slow_first``: the
    first request gets its answer (a 500) trickled over that many seconds."""

    def __init__(self, slow_first: float = 0.0) -> None:
        self.keys: list[str] = []
        self.lock = threading.Lock()
        self.slow_answered = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.keys.append(self.headers["Idempotency-Key"])
                    first = len(receiver.keys) == 1
                if first and slow_first:
                    self.wfile.write(b"HTTP/1.1 500 Internal Server Error\r\n")
                    deadline = time.monotonic() + slow_first
                    while time.monotonic() < deadline:  # a line at a time: no read times out
                        self.wfile.write(b"X-Warten: 1\r\n")
                        self.wfile.flush()
                        time.sleep(0.05)
                    self.wfile.write(b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                    receiver.slow_answered.set()
                    return
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tickets"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.stop()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_two_action_servers_send_each_of_50_rows_exactly_once(postgres_url, receiver):
    store = TicketStore(postgres_url)
    expected = [
        f"{store.create(f'kunde-{n}', 'rest', 'Frage', None, None, [], targets=['webhook']).ticket_id}-created-webhook"
        for n in range(50)
    ]
    sent_before = metric("faqbot_outbox_sent_total", target="webhook")
    config = DeliveryConfig(webhook_url=receiver.url)
    workers = [DeliveryWorker(TicketStore(postgres_url), config, poll_s=0.05) for _ in range(2)]
    run_together(*(worker.start for worker in workers))
    try:
        assert wait_for(lambda: store.backlog() == 0 and len(receiver.keys) >= 50)
        time.sleep(0.3)  # a late second send would arrive now
    finally:
        for worker in workers:
            worker.stop()
    assert sorted(receiver.keys) == sorted(expected)  # each once
    assert metric("faqbot_outbox_sent_total", target="webhook") - sent_before == 50
    assert metric("faqbot_outbox_backlog") == 0


def test_a_send_that_outlasts_its_claim_does_not_undo_the_delivery_of_the_worker_that_took_over(postgres_url):
    """The first server's send hangs longer than its claim; the second takes the row over and
    delivers it. The first one's late failure must not put the row back to be sent again."""
    receiver = Receiver(slow_first=2.5)
    config = DeliveryConfig(webhook_url=receiver.url, timeout_s=0.2, retry_base_s=0.2, retry_cap_s=0.2)
    store = TicketStore(postgres_url)
    ticket = store.create("kunde", "rest", "Frage", None, None, [], targets=["webhook"])
    failures_before = metric("faqbot_outbox_failures_total", target="webhook")
    slow = DeliveryWorker(TicketStore(postgres_url), config, poll_s=0.05).start()
    other = None
    try:
        assert wait_for(lambda: len(receiver.keys) == 1)
        other = DeliveryWorker(TicketStore(postgres_url), config, poll_s=0.05).start()
        assert wait_for(lambda: store.deliveries_for(ticket.ticket_id)[0].status == "delivered")
        assert receiver.slow_answered.wait(5)
        time.sleep(1.0)  # longer than the backoff: a row put back would be sent again now
    finally:
        slow.stop()
        if other:
            other.stop()
        receiver.stop()
    [delivery] = store.deliveries_for(ticket.ticket_id)
    assert (delivery.status, delivery.attempts) == ("delivered", 1)
    assert receiver.keys == [f"{ticket.ticket_id}-created-webhook"] * 2  # the hung one, and the one that arrived
    assert metric("faqbot_outbox_failures_total", target="webhook") - failures_before == 1


# --- finding 8: no file of this host where the instances share a database ---


def rasa_app(tracker_store) -> Sanic:
    """A Sanic app as Rasa sets it up: the agent with its tracker store (no model needed)."""
    app = Sanic(f"test_{uuid.uuid4().hex}", configure_logging=False)
    app.ctx.agent = Agent(domain=DOMAIN, tracker_store=tracker_store)
    return app


def shared_tracker_store(postgres_url: str, broker: ReviewQueueBroker) -> LeanSQLTrackerStore:
    url = sa.engine.make_url(postgres_url)
    return LeanSQLTrackerStore(
        domain=DOMAIN,
        dialect="postgresql",
        host=url.host,
        port=url.port,
        db=url.database,
        username=url.username,
        event_broker=broker,
    )


def test_a_rasa_server_on_a_shared_database_refuses_tickets_or_review_queue_in_a_local_file(
    postgres_url, tmp_path, monkeypatch
):
    monkeypatch.delenv("FAQBOT_TICKET_DB_URL", raising=False)
    monkeypatch.delenv("FAQBOT_REVIEW_DB_URL", raising=False)
    local_broker = ReviewQueueBroker(tmp_path / "review.db")
    app = rasa_app(shared_tracker_store(postgres_url, local_broker))
    with pytest.raises(support.SharedStoreMissing, match="Bitte setzen Sie FAQBOT_TICKET_DB_URL"):
        support.check_shared_stores(app)
    monkeypatch.setenv("FAQBOT_TICKET_DB_URL", f"sqlite:///{tmp_path / 'tickets.db'}")  # still this host's file
    with pytest.raises(support.SharedStoreMissing, match="FAQBOT_TICKET_DB_URL"):
        support.check_shared_stores(app)
    monkeypatch.setenv("FAQBOT_TICKET_DB_URL", postgres_url)
    with pytest.raises(support.SharedStoreMissing, match="Bitte setzen Sie FAQBOT_REVIEW_DB_URL"):
        support.check_shared_stores(app)
    shared_broker = ReviewQueueBroker(postgres_url)
    support.check_shared_stores(rasa_app(shared_tracker_store(postgres_url, shared_broker)))  # all shared
    for broker in (local_broker, shared_broker):
        asyncio.run(broker.close())


def test_a_rasa_server_on_sqlite_needs_no_new_setting(tmp_path, monkeypatch):
    """`make run`: everything in files under var/, as before."""
    monkeypatch.delenv("FAQBOT_TICKET_DB_URL", raising=False)
    monkeypatch.delenv("FAQBOT_REVIEW_DB_URL", raising=False)
    broker = ReviewQueueBroker(tmp_path / "review.db")
    store = LeanSQLTrackerStore(domain=DOMAIN, dialect="sqlite", db=str(tmp_path / "tracker.db"), event_broker=broker)
    support.check_shared_stores(rasa_app(store))
    asyncio.run(broker.close())


def test_the_brokers_url_setting_wins_and_an_empty_one_is_refused(monkeypatch, tmp_path):
    """endpoints.production.yml: ``url: ${FAQBOT_REVIEW_DB_URL}``; set but empty, it is never
    replaced by a file of this host."""
    from rasa.utils.endpoints import EndpointConfig

    monkeypatch.setenv("FAQBOT_REVIEW_DB", str(tmp_path / "review.db"))  # as `make run` and the cluster set it
    kind = "faqbot.server.review_broker.ReviewQueueBroker"
    broker = asyncio.run(ReviewQueueBroker.from_endpoint_config(EndpointConfig(url="postgresql://bot@db/x", type=kind)))
    assert broker.writer.location == "postgresql://bot@db/x"
    asyncio.run(broker.close())
    with pytest.raises(ValueError, match="Bitte setzen Sie FAQBOT_REVIEW_DB_URL"):
        asyncio.run(ReviewQueueBroker.from_endpoint_config(EndpointConfig(url="", type=kind)))


def test_a_rasa_server_on_a_shared_database_without_ticket_database_does_not_start(model_path, postgres_url, tmp_path):
    """The real server, started as on a production host whose FAQBOT_TICKET_DB_URL was forgotten."""
    url = sa.engine.make_url(postgres_url)
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text(
        "tracker_store:\n  type: faqbot.server.tracker_store.LeanSQLTrackerStore\n  dialect: postgresql\n"
        f"  url: {url.host}\n  port: {url.port}\n  db: {url.database}\n  username: {url.username}\n"
        f"event_broker:\n  type: faqbot.server.review_broker.ReviewQueueBroker\n  url: {postgres_url}\n",
        encoding="utf-8",
    )
    env = {
        name: value for name, value in os.environ.items() if name not in ("FAQBOT_TICKET_DB_URL", "FAQBOT_TICKET_DB")
    }
    server = subprocess.run(
        [sys.executable, "-m", "faqbot.server.rasa_server", "run", "--model", str(model_path)]
        + ["--port", str(free_port()), "--endpoints", str(endpoints), "--credentials", "credentials.yml"],
        cwd=PROJECT_DIR,
        env={**env, "FAQBOT_REST_TOKEN_TEST": "t" * 40, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert server.returncode != 0
    assert "Bitte setzen Sie FAQBOT_TICKET_DB_URL" in server.stdout + server.stderr, server.stderr[-3000:]
