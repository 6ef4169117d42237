"""Two Rasa instances behind nginx on PostgreSQL and Redis (``make cluster``), started as
the operator would, with the real components. The issue's findings, each as a test:
turns lost when one conversation's messages arrive at once, a crashed instance blocking a
conversation, a database restart silently losing or corrupting turns."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from conftest import running

from faqbot.cluster.run import Cluster
from faqbot.core import encryption, privacy

pytestmark = pytest.mark.components

QUESTION = "Wie bekomme ich eine Rechnung?"
SUPPORT_TOKEN = "support-token-for-the-cluster-tests-0123456789"


@pytest.fixture(scope="module")
def cluster(model_path: Path, tmp_path_factory) -> Cluster:
    var_dir = tmp_path_factory.mktemp("cluster")
    env = {"FAQBOT_SUPPORT_TOKEN": SUPPORT_TOKEN}
    with running(Cluster(var_dir=var_dir, model=model_path, log_dir=var_dir / "logs", env=env)) as servers:
        yield servers


def client(cluster: Cluster) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {cluster.rest_token}"
    return session


def post(session: requests.Session, url: str, sender: str, text: str) -> requests.Response:
    return session.post(f"{url}/webhooks/rest/webhook", json={"sender": sender, "message": text}, timeout=30)


def stored_user_texts(cluster: Cluster, sender: str) -> list[str]:
    """The customer's messages of the conversation as stored in PostgreSQL, in order."""
    engine = sa.create_engine(cluster.postgres.url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT data FROM events WHERE sender_id = :sender AND type_name = 'user' ORDER BY id"),
                {"sender": sender},
            ).fetchall()
    finally:
        engine.dispose()
    return [json.loads(encryption.decrypt(data, privacy.EVENT_DATA))["text"] for (data,) in rows]


def test_ten_messages_of_one_conversation_at_once_are_all_stored_once(cluster):
    """Finding 2: 18 of 150 user messages went missing (Rasa's lock is not atomic and the
    store dropped a concurrent turn). Now: 15 conversations, 10 messages each at once."""
    session = client(cluster)
    sent = {f"gleichzeitig-{c}": [f"{QUESTION} (Nachricht {n})" for n in range(10)] for c in range(15)}
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=30) as pool:
        futures = [
            (sender, text, pool.submit(post, session, cluster.url, sender, text))
            for n in range(10)
            for sender, texts in sent.items()
            for text in texts[n : n + 1]
        ]
        statuses = [(sender, text, future.result().status_code) for sender, text, future in futures]
    seconds = time.monotonic() - started
    assert [s for s in statuses if s[2] != 200] == []
    for sender, texts in sent.items():
        stored = stored_user_texts(cluster, sender)
        assert sorted(stored) == sorted(texts), sender  # none missing, none twice
    # Waiting for a lock reacts at once (Rasa's polled once per second: 10 messages took 9-10 s).
    assert seconds < 20, seconds


def load(cluster: Cluster, seconds: float, clients: int, during=None, retry_503: bool = False) -> dict:
    """``clients`` conversations sending one message after the other for ``seconds``; ``during``
    runs in the middle. Returns per conversation what was answered, and every failure."""
    results: dict[str, list] = defaultdict(list)
    failures: list[tuple[str, float, str]] = []
    answered_at: dict[str, list[float]] = defaultdict(list)
    stop_at = time.monotonic() + seconds

    def conversation(number: int) -> None:
        session, prefix = client(cluster), f"last-{number}-{time.monotonic_ns()}"
        count = 0
        while time.monotonic() < stop_at:
            text = f"{QUESTION} ({count})"
            # Conversations of ten messages, as customers write (within the per-conversation rate limit).
            sender = f"{prefix}-{count // 10}"
            try:
                response = post(session, cluster.url, sender, text)
                status = response.status_code
            except requests.RequestException as error:
                status, response = 0, error
            now = time.monotonic()
            if status == 200 and response.json():
                results[sender].append(text)
                answered_at[prefix].append(now)  # per client: how long it waited
                count += 1
            elif status == 503 and retry_503:
                assert response.headers.get("Retry-After"), response.headers
                assert "Bitte versuchen Sie es" in response.text, response.text
                failures.append((sender, now, "503"))
                time.sleep(0.5)  # the same message again, as a caller honouring Retry-After
            else:
                failures.append((sender, now, f"{status} {getattr(response, 'text', response)}"[:200]))
                count += 1

    threads = [threading.Thread(target=conversation, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    event_at = stop_at
    if during:
        time.sleep(seconds / 3)
        event_at = time.monotonic()
        during()
    for thread in threads:
        thread.join()
    answered = sum(len(texts) for texts in results.values())
    # How long each conversation waited, from the event, for its next answer.
    blocked = [min((t for t in times if t > event_at), default=stop_at) - event_at for times in answered_at.values()]
    return {"results": results, "failures": failures, "answered": answered, "blocked": max(blocked, default=0)}


def test_an_instance_killed_under_load_fails_few_requests_and_blocks_no_conversation(cluster):
    """Finding 3: a killed instance's lock froze its conversation for 60 s, then the message
    got `200 []`. Now: at most 1 % failed requests, no conversation waits more than 5 s."""
    # Not restarted during the load: on real hosts the restart's model loading does not take
    # the surviving instance's CPU, as it would on this one machine (tests/test_supervisor.py
    # covers the restart).
    outcome = load(cluster, seconds=15, clients=20, during=lambda: cluster.kill_instance(1))
    failed = len(outcome["failures"])
    assert failed <= 0.01 * (outcome["answered"] + failed), outcome["failures"]
    assert outcome["blocked"] <= 5, outcome["blocked"]
    # Every answered message is stored once: nginx sent the requests in flight on the killed
    # instance to the other one, which answered a turn already stored from the store.
    for sender, texts in outcome["results"].items():
        stored = stored_user_texts(cluster, sender)
        assert [text for text in texts if stored.count(text) != 1] == [], sender
    cluster.start_instance(1)
    cluster.wait_ready()


def test_a_database_restart_under_load_loses_and_corrupts_nothing(cluster):
    """Finding 4: Rasa fell back to its in-memory store; 20 of 1,258 answered turns were
    missing afterwards and histories corrupted. Now: callers get 503 (German, Retry-After)
    and send again; afterwards every answered turn is stored exactly once, in order."""

    def restart_database() -> None:
        cluster.postgres.stop_server("fast")
        time.sleep(2)
        cluster.postgres.start_server()

    outcome = load(cluster, seconds=15, clients=10, during=restart_database, retry_503=True)
    assert outcome["failures"], "the outage was not noticed"
    assert [failure for failure in outcome["failures"] if failure[2] != "503"] == []
    for sender, texts in outcome["results"].items():
        assert stored_user_texts(cluster, sender) == texts, sender


def test_a_request_sent_again_with_its_request_id_is_answered_from_the_store(cluster):
    """What nginx relies on when it sends a request in flight on a dead instance to the other
    one: the same X-Request-ID gets the stored answer, the turn is not processed twice."""
    session, sender = client(cluster), f"wiederholt-{time.monotonic_ns()}"
    headers = {"X-Request-ID": "3f2a9c0d5e6b7a8c9d0e1f2a3b4c5d6e"}
    body = {"sender": sender, "message": QUESTION}
    first = session.post(f"{cluster.instance_url(0)}/webhooks/rest/webhook", json=body, headers=headers, timeout=30)
    again = session.post(f"{cluster.instance_url(1)}/webhooks/rest/webhook", json=body, headers=headers, timeout=30)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() != []
    assert stored_user_texts(cluster, sender) == [QUESTION]
    # Without the id (or with another one) the same text is a new message.
    assert post(session, cluster.url, sender, QUESTION).json() == first.json()
    assert stored_user_texts(cluster, sender) == [QUESTION, QUESTION]


def test_with_redis_down_customers_and_the_support_team_are_told_to_try_again(cluster):
    """The conversation locks are in Redis: without it no turn runs and no conversation is
    erased, and both callers hear so (503, German, Retry-After) instead of an error page."""
    session = client(cluster)
    assert post(session, cluster.url, "redis-weg", QUESTION).status_code == 200
    cluster.redis.stop()
    try:
        refused = post(session, cluster.url, "redis-weg", QUESTION)
        erase = requests.post(
            f"{cluster.url}/webhooks/support/privacy/erase",
            json={"conversation_id": "redis-weg"},
            headers={"Authorization": f"Bearer {SUPPORT_TOKEN}"},
            timeout=30,
        )
    finally:
        cluster.redis.start()
    for response in (refused, erase):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert "Bitte versuchen Sie es" in response.json()["message"]
    assert stored_user_texts(cluster, "redis-weg") == [QUESTION]  # nothing erased, nothing added
    assert post(session, cluster.url, "redis-weg", QUESTION).status_code == 200  # back
