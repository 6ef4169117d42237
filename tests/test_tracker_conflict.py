"""No lost turns, failing loudly (issue 13): a turn saved over a concurrent one of the same
conversation is refused (TurnConflict, nothing of it stored) instead of silently dropped, on
SQLite and PostgreSQL; a database outage fails the turn (ServiceUnavailable) instead of Rasa
falling back to its in-memory store, and the store reconnects after a restart; the REST
channel answers both with a German 503 and Retry-After."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from rasa.core.agent import Agent
from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.lock_store import LockStore
from rasa.core.tracker_store import FailSafeTrackerStore, SQLTrackerStore, TrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import EndpointConfig

from faqbot.cluster.components import PostgreSQL
from faqbot.core import encryption, privacy
from faqbot.core.paths import PROJECT_DIR
from faqbot.server import failures
from faqbot.server.channels.rest import RestInput, process_or_apologise
from faqbot.server.failures import ServiceUnavailable, TurnConflict
from faqbot.server.tracker_store import LeanSQLTrackerStore

DOMAIN = Domain.load(PROJECT_DIR / "domain.yml")
TOKEN = "rest-integration-token-for-the-conflict-tests-0123"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.components)])
def database(request, tmp_path) -> str:
    """A SQLAlchemy URL of an empty database: a SQLite file, or one on the test PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tracker.db'}"
    return request.getfixturevalue("postgres_url")


def lean(url: str) -> LeanSQLTrackerStore:
    """One Rasa instance's store (Rasa takes a complete URL as ``url``/host)."""
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    if dialect == "sqlite":
        return LeanSQLTrackerStore(domain=DOMAIN, dialect="sqlite", db=url.removeprefix("sqlite:///"))
    return LeanSQLTrackerStore(domain=DOMAIN, dialect=dialect, host=url)


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def answer(tracker: DialogueStateTracker, text: str) -> None:
    """A customer's message and the bot's answer, as a turn adds them."""
    tracker.update(UserUttered(text, intent={"name": "greet", "confidence": 0.93}))
    tracker.update(ActionExecuted("utter_greet"))
    tracker.update(BotUttered(f"Antwort auf {text}"))
    tracker.update(ActionExecuted("action_listen"))


async def begin(store: TrackerStore, sender: str) -> DialogueStateTracker:
    """As Rasa's processor does: load the conversation, or create it (saved) with a session start."""
    tracker = await store.get_or_create_tracker(sender, append_action_listen=False)
    if not tracker.events:
        started = SessionStarted()  # Rasa logs action_session_start after the action's events
        for event in (ActionExecuted("action_session_start"), started, ActionExecuted("action_listen")):
            tracker.update(event)
    return tracker


async def turn(store: TrackerStore, sender: str, text: str, pause: float = 0.0) -> None:
    tracker = await begin(store, sender)
    await asyncio.sleep(pause)  # NLU, policies, custom actions: other turns run meanwhile
    answer(tracker, text)
    await store.save(tracker)


def stored(url: str, sender: str) -> list[dict[str, Any]]:
    """The conversation's events as stored, decrypted, in order (read without the store)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT data FROM events WHERE sender_id = :sender ORDER BY id"), {"sender": sender}
            ).fetchall()
    finally:
        engine.dispose()
    return [json.loads(encryption.decrypt(data, privacy.EVENT_DATA)) for (data,) in rows]


def user_texts(url: str, sender: str) -> list[str]:
    return [event["text"] for event in stored(url, sender) if event["event"] == "user"]


def stop(server: PostgreSQL) -> None:
    server.stop_server("fast")
    # stop_server does not check pg_ctl's result: a server still running would pass as an outage.
    assert not (server.data / "postmaster.pid").exists(), server.log.read_text(errors="replace")[-2000:]


# --- conflicts ---


async def test_a_turn_saved_over_a_concurrent_one_is_refused_and_stores_nothing(database):
    """The finding: the store counted the stored events, so the second turn's events were
    taken as already stored and silently dropped."""
    first_instance, second_instance = lean(database), lean(database)
    await turn(first_instance, "kunde", "Hallo")
    first, second = await first_instance.retrieve("kunde"), await second_instance.retrieve("kunde")
    answer(first, "Erste Frage")
    answer(second, "Zweite Frage")
    conflicts = counter("faqbot_tracker_store_errors_total", operation="save", reason="conflict")
    await first_instance.save(first)
    with pytest.raises(TurnConflict):
        await second_instance.save(second)
    assert user_texts(database, "kunde") == ["Hallo", "Erste Frage"]
    assert counter("faqbot_tracker_store_errors_total", operation="save", reason="conflict") == conflicts + 1
    # Sent again (the caller got a 503), the turn is stored after the other one, whole.
    await turn(second_instance, "kunde", "Zweite Frage")
    assert user_texts(database, "kunde") == ["Hallo", "Erste Frage", "Zweite Frage"]
    assert [event["text"] for event in stored(database, "kunde") if event["event"] == "bot"] == [
        "Antwort auf Hallo",
        "Antwort auf Erste Frage",
        "Antwort auf Zweite Frage",
    ]


async def test_the_same_new_conversation_started_on_two_instances_is_stored_once(database):
    first_instance, second_instance = lean(database), lean(database)
    first, second = await begin(first_instance, "neu"), await begin(second_instance, "neu")
    answer(first, "Hallo von hier")
    answer(second, "Hallo von dort")
    await first_instance.save(first)
    with pytest.raises(TurnConflict):
        await second_instance.save(second)
    assert user_texts(database, "neu") == ["Hallo von hier"]
    assert [event["event"] for event in stored(database, "neu")].count("session_started") == 1


async def test_one_tracker_saved_several_times_in_a_turn_stores_each_event_once(database):
    """Rasa saves the tracker it created (empty) and again at the end of the turn, and may save
    in between: each save stores only what is new since the last one."""
    store = lean(database)
    tracker = await begin(store, "kunde")
    answer(tracker, "Hallo")
    await store.save(tracker)
    await store.save(tracker)  # nothing new
    answer(tracker, "Noch etwas")
    await store.save(tracker)
    events = stored(database, "kunde")
    assert len(events) == len(tracker.events) == 11
    assert user_texts(database, "kunde") == ["Hallo", "Noch etwas"]


async def test_a_conversation_stored_before_the_version_table_existed_goes_on(tmp_path):
    """Databases of Rasa's own SQL store and of this store before issue 13 have no
    ``conversation_versions``: their conversations load, go on and are protected from then on."""
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    rasa = SQLTrackerStore(domain=DOMAIN, dialect="sqlite", db=str(tmp_path / "tracker.db"))
    await turn(rasa, "alt", "Hallo")
    first_instance, second_instance = lean(url), lean(url)
    first, second = await first_instance.retrieve("alt"), await second_instance.retrieve("alt")
    assert len(first.events) == 7
    answer(first, "Weiter")
    answer(second, "Gleichzeitig")
    await first_instance.save(first)
    with pytest.raises(TurnConflict):
        await second_instance.save(second)
    await turn(second_instance, "alt", "Gleichzeitig")
    texts = [event["text"] for event in stored(url, "alt")[7:] if event["event"] == "user"]  # Rasa's in clear
    assert texts == ["Weiter", "Gleichzeitig"]


async def test_a_conversation_erased_for_privacy_can_start_again(database):
    """faqbot.core.privacy deletes a conversation's events (erasure, retention) with its
    version row (the sender id may be a customer number): the same id starts afresh."""
    store = lean(database)
    await turn(store, "geloescht", "Meine Adresse ist ...")
    engine = sa.create_engine(database)
    privacy._delete_events(SimpleNamespace(tracker=engine), privacy.events.c.sender_id == "geloescht")
    with engine.connect() as connection:
        left = connection.execute(sa.text("SELECT count(*) FROM conversation_versions WHERE sender_id = 'geloescht'"))
        assert left.scalar() == 0
    engine.dispose()
    await turn(lean(database), "geloescht", "Neue Frage")
    assert user_texts(database, "geloescht") == ["Neue Frage"]


@pytest.mark.components
def test_concurrent_turns_of_one_conversation_on_two_instances_are_each_stored_once_or_refused(postgres_url):
    """Without a lock (lost, expired, or none): ten turns of one conversation at once, five on
    each of two instances (threads with their own event loop and store, so the database sees
    truly concurrent transactions). A refused turn is sent again, as after a 503. Each turn
    ends up stored exactly once and whole: no message missing, none twice, none interleaved."""
    stores = [lean(postgres_url), lean(postgres_url)]
    texts = [[f"Frage {instance}.{n}" for n in range(5)] for instance in range(2)]
    refused: list[str] = []
    errors: list[BaseException] = []

    async def send(store: LeanSQLTrackerStore, text: str) -> None:
        for _ in range(100):
            try:
                return await turn(store, "gleichzeitig", text, pause=random.uniform(0, 0.03))
            except TurnConflict:
                refused.append(text)
                await asyncio.sleep(random.uniform(0, 0.03))
        raise AssertionError(f"{text}: 100 Mal abgewiesen")

    def instance(number: int) -> None:
        async def run() -> None:
            await asyncio.gather(*(send(stores[number], text) for text in texts[number]))

        try:
            asyncio.run(run())
        except BaseException as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=instance, args=(number,)) for number in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    events = stored(postgres_url, "gleichzeitig")
    users = [event["text"] for event in events if event["event"] == "user"]
    assert sorted(users) == sorted(texts[0] + texts[1])
    assert refused  # the turns did overlap
    # Each turn whole and in one piece: user message, utter_greet, its answer, action_listen.
    for position, event in enumerate(events):
        if event["event"] == "user":
            assert events[position + 2]["text"] == f"Antwort auf {event['text']}"
    assert [event["event"] for event in events].count("session_started") == 1


# --- outages: no fallback to Rasa's in-memory store ---


class BrokenStore(TrackerStore):
    """A tracker store whose every call fails (a bug, a driver error)."""

    async def retrieve(self, sender_id: str) -> DialogueStateTracker | None:
        raise RuntimeError("kaputt")

    async def retrieve_full_tracker(self, conversation_id: str) -> DialogueStateTracker | None:
        raise RuntimeError("kaputt")

    async def save(self, tracker: DialogueStateTracker) -> None:
        raise RuntimeError("kaputt")

    async def keys(self) -> list[str]:
        raise RuntimeError("kaputt")


async def test_rasas_fail_safe_wrapper_raises_instead_of_falling_back_to_memory():
    """Rasa's Agent wraps every tracker store in FailSafeTrackerStore, which returned None
    (a new, empty conversation) for a failed read and saved a failed write in memory."""
    wrapped = Agent._create_tracker_store(BrokenStore(DOMAIN), DOMAIN)  # as Rasa's Agent does
    assert isinstance(wrapped, FailSafeTrackerStore)
    tracker = DialogueStateTracker.from_events("kunde", [ActionExecuted("action_listen")], DOMAIN.slots)
    for call in (
        wrapped.retrieve("kunde"),
        wrapped.retrieve_full_tracker("kunde"),
        wrapped.get_or_create_tracker("kunde"),
        wrapped.save(tracker),
        wrapped.keys(),
    ):
        with pytest.raises(ServiceUnavailable) as error:
            await call
        assert isinstance(error.value.__cause__, RuntimeError)
    assert wrapped._fallback_tracker_store is None  # never created


async def test_a_conflict_passes_rasas_wrapper_unchanged(tmp_path):
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    first_instance, second_instance = (Agent._create_tracker_store(lean(url), DOMAIN) for _ in range(2))
    first, second = await begin(first_instance, "kunde"), await begin(second_instance, "kunde")
    answer(first, "Hier")
    answer(second, "Dort")
    await first_instance.save(first)
    with pytest.raises(TurnConflict):
        await second_instance.save(second)


@pytest.mark.components
async def test_a_database_restart_fails_turns_visibly_and_the_store_reconnects(tmp_path):
    """The finding: during a PostgreSQL restart Rasa went on in memory; turns were missing
    and histories corrupted afterwards. A server of this test's own, so the shared one stays up."""
    with PostgreSQL(tmp_path / "pg") as server:
        store = Agent._create_tracker_store(lean(server.url), DOMAIN)  # as Rasa's Agent wraps it
        await turn(store, "kunde", "Vor dem Neustart")
        loaded = await store.retrieve("kunde")
        unavailable = counter("faqbot_tracker_store_errors_total", operation="retrieve", reason="unavailable")
        stop(server)
        with pytest.raises(ServiceUnavailable):
            await store.retrieve("kunde")
        answer(loaded, "Während des Neustarts")
        with pytest.raises(ServiceUnavailable):
            await store.save(loaded)
        assert counter("faqbot_tracker_store_errors_total", operation="retrieve", reason="unavailable") == (
            unavailable + 1
        )
        server.start_server()
        # The first turn after the restart works (the pool's dead connections are replaced),
        # and the failed one, sent again, is stored once.
        await turn(store, "kunde", "Während des Neustarts")
        await turn(store, "kunde", "Nach dem Neustart")
        assert user_texts(server.url, "kunde") == ["Vor dem Neustart", "Während des Neustarts", "Nach dem Neustart"]


# --- the REST channel: 503 with Retry-After, never an apology with 200 ---


def post(http: aiohttp.ClientSession, url: str, text: str, **params: str):
    return http.post(
        f"{url}/webhooks/rest/webhook",
        json={"sender": "kunde", "message": text},
        headers={"Authorization": f"Bearer {TOKEN}"},
        params=params,
    )


async def test_rest_answers_a_turn_that_could_not_be_stored_with_a_german_503(serve, monkeypatch, caplog):
    monkeypatch.setenv("FAQBOT_REST_TOKEN_HELPDESK", TOKEN)

    async def on_new_message(message: UserMessage) -> None:
        # The bot answered, then the save failed: the answer must not reach the caller as a 200.
        await message.output_channel.send_text_message(message.sender_id, "Ihre Rechnung finden Sie ...")
        if "Konflikt" in message.text:
            raise TurnConflict("anderer Zug gespeichert")
        if "Ausfall" in message.text:
            raise ServiceUnavailable("Datenbank nicht erreichbar")

    async with serve(RestInput(), on_new_message) as url, aiohttp.ClientSession() as http:
        for text in ("Geheime Kundennummer 4711 Konflikt", "Geheime Kundennummer 4711 Ausfall"):
            async with post(http, url, text) as reply:
                assert reply.status == 503
                assert reply.headers["Retry-After"] == str(failures.RETRY_AFTER_S)
                assert await reply.json() == {"error": "service_unavailable", "message": failures.MESSAGE}
            # The next request (same keep-alive connection) is answered normally.
            async with post(http, url, "Rechnung") as reply:
                assert reply.status == 200
                assert await reply.json() == [{"recipient_id": "kunde", "text": "Ihre Rechnung finden Sie ..."}]
        # Streaming has sent its 200 before the turn runs: the German message is the reply.
        async with post(http, url, "Konflikt", stream="true") as reply:
            assert failures.MESSAGE in await reply.text()
    assert "nicht gespeichert" in caplog.text
    assert "4711" not in caplog.text  # no customer text in the log


async def test_the_widget_gets_the_german_message_when_a_turn_could_not_be_stored():
    """The widget's channel (socket.io) shares process_or_apologise: its customer reads the message."""

    async def unavailable(message: UserMessage) -> None:
        raise ServiceUnavailable("Sperrspeicher nicht erreichbar")

    output = CollectingOutputChannel()
    failure = await process_or_apologise(unavailable, UserMessage("Hallo", output, "kunde"))
    assert isinstance(failure, ServiceUnavailable)
    assert [message["text"] for message in output.messages] == [failures.MESSAGE]


@pytest.mark.components
async def test_rasa_answers_503_while_its_database_is_down_and_stores_the_message_sent_again(
    model_path, redis_url, serve, monkeypatch, tmp_path
):
    """The whole way, as in production: Rasa's agent (the trained model) with the lock store
    and the tracker store (wrapped by Rasa), behind the REST channel. What reaches the
    channel when PostgreSQL is down is ServiceUnavailable: a 503; sent again, stored once."""
    monkeypatch.setenv("FAQBOT_REST_TOKEN_HELPDESK", TOKEN)
    question = "Wie bekomme ich eine Rechnung?"
    with PostgreSQL(tmp_path / "pg") as server:
        locks = LockStore.create(EndpointConfig(type="faqbot.server.lock_store.AtomicRedisLockStore", url=redis_url))
        agent = Agent.load(model_path, tracker_store=lean(server.url), lock_store=locks)

        async def handler(message: UserMessage) -> None:  # as rasa.core.channels.channel.register
            await agent.handle_message(message)

        async with serve(RestInput(), handler) as url, aiohttp.ClientSession() as http:
            async with post(http, url, "Hallo") as reply:
                assert reply.status == 200
            stop(server)
            async with post(http, url, question) as reply:
                assert reply.status == 503
                assert (await reply.json())["message"] == failures.MESSAGE
            server.start_server()
            async with post(http, url, question) as reply:
                assert reply.status == 200
        assert user_texts(server.url, "kunde") == ["Hallo", question]
