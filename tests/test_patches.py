"""The patches of Rasa, Sanic and python-socketio internals (faqbot.server.patches): each checks at
start-up that its target exists in the version it was written for, a failed check stops
the server, and Rasa's own code really calls each replacement.

The tracker store's patch is tested in test_tracker_store.py, its replacement of Rasa's
fail-safe fallback in test_tracker_conflict.py, the lock store in test_lock_store.py. The support API's calls into
Rasa's agent run end to end in test_escalation_delivery.py (REST) and test_widget.py
(pushed to the widget).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import inspect
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any

import aiohttp
import jwt
import pytest
import rasa.core.lock_store
import rasa.core.run
import rasa.core.tracker_store
import socketio
from conftest import free_port
from jsonschema import ValidationError
from rasa.core.actions.action import RemoteAction
from rasa.core.agent import Agent
from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput as RasaRestInput
from rasa.core.lock_store import LockStore
from rasa.core.nlg import TemplatedNaturalLanguageGenerator
from rasa.core.processor import MessageProcessor
from rasa.core.tracker_store import FailSafeTrackerStore, SQLTrackerStore, TrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import read_endpoint_config
from sanic import Sanic

from faqbot.core.paths import PROJECT_DIR
from faqbot.core.text import clean_text
from faqbot.server import lock_store, patches, rasa_server, tracker_store
from faqbot.server.channels import rest, support
from faqbot.server.channels import socketio as socketio_channel
from faqbot.server.channels.rest import PROCESSING_ERROR, RestInput
from faqbot.server.channels.socketio import TOO_LONG, SocketIOInput, WidgetOutput
from faqbot.server.patches import PatchTargetError, require_attribute, require_version

DOMAIN = Domain.load(PROJECT_DIR / "domain.yml")
ALLOWED, FOREIGN = "http://hilfe.example", "http://fremd.example"
JWT_KEY = "ein-geheimer-schluessel-nur-fuer-diesen-test"


def counting(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[tuple[tuple, dict]]:
    """Wraps ``owner.name`` (for this test) so that each call is recorded; the wrapped
    function still runs. Returns the calls' (positional, keyword) arguments."""
    calls: list[tuple[tuple, dict]] = []
    original = getattr(owner, name)
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append((args, kwargs))
            return await original(*args, **kwargs)

    else:

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append((args, kwargs))
            return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


# --- the checks themselves, on the installed distributions ---


def test_require_version_names_the_patch_and_both_versions():
    installed = importlib.metadata.version("rasa")
    require_version("rasa", installed, "Testpatch")  # the installed version passes
    with pytest.raises(PatchTargetError) as error:
        require_version("rasa", "0.0.1", "Testpatch")
    assert str(error.value).startswith(f"Testpatch was written for rasa 0.0.1, but {installed} is installed.")
    with pytest.raises(PatchTargetError, match="Testpatch was written for gibt-es-nicht 1.0, which is not installed"):
        require_version("gibt-es-nicht", "1.0", "Testpatch")


def test_require_attribute_returns_it_or_names_what_is_missing():
    assert require_attribute(rasa.core.run, "serve_application", "Testpatch") is rasa.core.run.serve_application
    cases = [
        (RemoteAction, "RemoteAction._gibt_es_nicht"),
        (rasa.core.run, "rasa.core.run._gibt_es_nicht"),
        (RasaRestInput(), "RestInput object._gibt_es_nicht"),
    ]
    for owner, missing in cases:
        with pytest.raises(PatchTargetError) as error:
            require_attribute(owner, "_gibt_es_nicht", "Testpatch")
        assert str(error.value) == f"Testpatch relies on {missing}, which the installed version does not have."


# --- every patch checks its versions and targets; the entry point checks them all ---

VERSIONS = [
    (rasa_server, "RASA_VERSION", "rasa"),
    (tracker_store, "RASA_VERSION", "rasa"),
    (lock_store, "RASA_VERSION", "rasa"),
    (rest, "RASA_VERSION", "rasa"),
    (rest, "SANIC_VERSION", "sanic"),
    (socketio_channel, "RASA_VERSION", "rasa"),
    (socketio_channel, "SANIC_VERSION", "sanic"),
    (socketio_channel, "PYTHON_SOCKETIO_VERSION", "python-socketio"),
    (socketio_channel, "PYTHON_ENGINEIO_VERSION", "python-engineio"),
    (support, "RASA_VERSION", "rasa"),
]


@pytest.mark.parametrize("module, constant, distribution", VERSIONS)
def test_each_patch_stops_on_another_version_of_what_it_patches(monkeypatch, module, constant, distribution):
    module.check_targets()  # the installed versions pass
    rasa_server.check_patches()
    monkeypatch.setattr(patches, constant, "0.0.1")
    with pytest.raises(PatchTargetError, match=f"^{re.escape(module.PATCH)} was written for {distribution} 0.0.1, "):
        module.check_targets()
    with pytest.raises(PatchTargetError, match=f"was written for {distribution} 0.0.1, "):
        rasa_server.check_patches()  # what `python -m faqbot.server.rasa_server` runs before Rasa


TARGETS = [
    (rasa_server, RemoteAction, "_validate_action_result"),
    (rasa_server, RemoteAction, "action_response_format_spec"),
    (rasa_server, rasa.core.run, "load_agent_on_start"),
    (tracker_store, SQLTrackerStore, "_retrieve"),
    (tracker_store, TrackerStore, "_stream_new_events"),
    (tracker_store, SQLTrackerStore, "session_scope"),
    (tracker_store, SQLTrackerStore, "SQLEvent"),
    (tracker_store, rasa.core.tracker_store, "create_engine_kwargs"),
    (tracker_store, FailSafeTrackerStore, "on_tracker_store_error"),
    (tracker_store, FailSafeTrackerStore, "on_tracker_store_retrieve_error"),
    (lock_store, LockStore, "lock"),
    (lock_store, rasa.core.lock_store, "_load_from_module_name_in_endpoint_config"),
    (rest, RasaRestInput, "_extract_message"),
    (support, Agent, "trigger_intent"),
    (support, LockStore, "lock"),
    (support, MessageProcessor, "fetch_tracker_and_update_session"),
]


@pytest.mark.parametrize("module, owner, name", TARGETS, ids=[f"{m.__name__}:{n}" for m, _, n in TARGETS])
def test_each_patch_stops_when_its_target_is_gone(monkeypatch, module, owner, name):
    monkeypatch.delattr(owner, name)
    with pytest.raises(PatchTargetError, match=f"^{re.escape(module.PATCH)} relies on \\S+\\.{name}, "):
        module.check_targets()


def test_the_origin_check_stops_when_rasa_registered_no_connect_handler():
    """Checked when Rasa builds the channel's blueprint; the tests below show it finds
    Rasa's handler in the installed versions."""
    server = socketio.AsyncServer(async_mode="asgi")
    with pytest.raises(PatchTargetError, match=r"AsyncServer\.handlers\['/'\]"):
        socketio_channel.rasa_connect_handler(server, "/")


def test_the_server_does_not_start_when_a_check_fails():
    """`python -m faqbot.server.rasa_server run ...` (as `make run` starts it), with its
    patches claiming another Rasa version: it stops before Rasa runs, with the reason."""
    result = subprocess.run(
        [sys.executable, "tests/rasa_server_written_for.py", "RASA_VERSION=3.5.0", "run", "--port", str(free_port())],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    installed = importlib.metadata.version("rasa")
    assert (
        f"PatchTargetError: {rasa_server.PATCH} was written for rasa 3.5.0, but {installed} is installed."
        in result.stderr
    )
    assert "Starting Rasa server" not in result.stdout + result.stderr


@pytest.mark.parametrize("channel", ["rest.RestInput", "socketio.SocketIOInput", "support.SupportInput"])
def test_a_failed_check_stops_rasa_loading_the_channel(tmp_path, monkeypatch, channel):
    """Plain `rasa run` loads the channels from credentials.yml: the check's error comes
    through Rasa's loading, which would turn an ImportError into "unknown channel"."""
    module = f"faqbot.server.channels.{channel.split('.')[0]}"
    credentials = tmp_path / "credentials.yml"
    credentials.write_text(f"faqbot.server.channels.{channel}:\n", encoding="utf-8")
    assert [type(c).__name__ for c in rasa.core.run.create_http_input_channels(None, str(credentials))] == [
        channel.split(".")[1]
    ]
    monkeypatch.setattr(patches, "RASA_VERSION", "0.0.1")
    monkeypatch.delitem(sys.modules, module)  # imported afresh, as when Rasa starts
    with pytest.raises(PatchTargetError, match="was written for rasa 0.0.1"):
        rasa.core.run.create_http_input_channels(None, str(credentials))


# --- Rasa really calls the replacements ---


@pytest.fixture
def installed(monkeypatch):
    """rasa_server.install() for one test; Rasa's own functions are back afterwards."""
    monkeypatch.setattr(RemoteAction, "_validate_action_result", RemoteAction._validate_action_result)
    monkeypatch.setattr(rasa.core.run, "load_agent_on_start", rasa.core.run.load_agent_on_start)


@pytest.fixture(scope="module")
def action_server(tmp_path_factory) -> str:
    """The project's action server (`python -m faqbot.server.action_server`); needs no model."""
    var_dir = tmp_path_factory.mktemp("actions")
    port = free_port()
    env = {**os.environ, "FAQBOT_TICKET_DB": str(var_dir / "tickets.db"), "PYTHONUNBUFFERED": "1"}
    with (var_dir / "actions.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "faqbot.server.action_server", "--port", str(port)],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (var_dir / "actions.log").read_text(errors="replace")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "action server not ready"
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_prebuilt_response_check_validates_as_rasa_does(installed):
    rasa_server.install()  # as `python -m faqbot.server.rasa_server run` does before Rasa starts
    action = RemoteAction("action_answer_faq", None)
    assert action._validate_action_result({"events": [], "responses": [{"text": "Hallo"}]})
    with pytest.raises(ValidationError, match="Failed to validate Action server response"):
        action._validate_action_result({"events": [{"event": 42}], "responses": []})


async def test_rasa_checks_a_custom_actions_response_with_the_prebuilt_validator(installed, monkeypatch, action_server):
    checked = counting(monkeypatch, rasa_server, "_validate_action_result")
    rasa_server.install()
    tracker = DialogueStateTracker.from_events(
        "kunde", [ActionExecuted("action_listen"), UserUttered("nein", intent={"name": "deny"})], DOMAIN.slots
    )
    # The shipped endpoints.yml, as Rasa reads it: it sends the action server's token.
    endpoint = read_endpoint_config(str(PROJECT_DIR / "endpoints.yml"), "action_endpoint")
    endpoint.url = f"{action_server}/webhook"
    action = RemoteAction("action_decline_handoff", endpoint)
    events = await action.run(
        CollectingOutputChannel(), TemplatedNaturalLanguageGenerator(DOMAIN.responses), tracker, DOMAIN
    )
    assert len(checked) == 1  # Rasa's RemoteAction.run called the replacement once
    (action_, response), _ = checked[0]
    assert action_ is action
    assert response["events"] == [{"event": "slot", "timestamp": None, "name": "handoff_offered", "value": False}]
    assert SlotSet("handoff_offered", False) in events
    assert [e.text for e in events if isinstance(e, BotUttered)] == [DOMAIN.responses["utter_anything_else"][0]["text"]]


def test_rasas_server_start_loads_the_model_through_the_freezing_listener(bot):
    """rasa.core.run.serve_application registers load_agent_on_start; in the real servers
    (Rasa and NLU, started as `make run` does) that is the replacement, which logs this.
    Both servers started, so the support API's check of the running server passed too."""
    for name in ("rasa", "nlu"):
        log = (bot.servers.log_dir / f"{name}.log").read_text(errors="replace")
        assert re.search(r"Modell geladen; [1-9]\d* Objekte vom Garbage Collector ausgenommen\.", log), name
    assert bot.alive()


# --- the channels, served by a real Sanic server as Rasa serves them ---


async def test_rasas_rest_webhook_reads_the_message_through_the_cleaning_override(serve, monkeypatch):
    token = "patch-test-integration-token-0123456789"
    monkeypatch.setenv("FAQBOT_REST_TOKEN_TEST", token)
    extracted = counting(monkeypatch, RestInput, "_extract_message")
    received: list[UserMessage] = []

    async def on_new_message(message: UserMessage) -> None:
        received.append(message)
        if message.text == "kaputt":
            raise RuntimeError("Fehler bei der Verarbeitung")
        await message.output_channel.send_text_message(message.sender_id, "Guten Tag!")

    raw = "Rech\x00nung\x07 bitte"
    authorized = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})
    async with serve(RestInput(), on_new_message) as url, authorized as http:
        webhook = f"{url}/webhooks/rest/webhook"
        async with http.post(webhook, json={"sender": "kunde", "message": raw}) as reply:
            assert reply.status == 200
            assert await reply.json() == [{"recipient_id": "kunde", "text": "Guten Tag!"}]
        async with http.post(webhook, json={"sender": "kunde", "message": "kaputt"}) as reply:
            assert reply.status == 200
            assert await reply.json() == [{"recipient_id": "kunde", "text": PROCESSING_ERROR}]
        async with http.post(webhook, data=b"kein json", headers={"Content-Type": "application/json"}) as reply:
            assert reply.status == 400
            assert (await reply.json())["error"] == "invalid_json"
    assert len(extracted) == 2  # Rasa's webhook called the override; not for the refused request
    assert [message.text for message in received] == [clean_text(raw), "kaputt"]
    assert received[0].text == "Rechnung bitte"


async def connects(url: str, origin: str | None, auth: dict | None = None) -> bool:
    """Whether the socket.io server accepts a client with this Origin header (and auth)."""
    client = socketio.AsyncClient()
    outcome = asyncio.get_running_loop().create_future()
    client.on("connect", lambda: outcome.done() or outcome.set_result(True))
    client.on("connect_error", lambda *_: outcome.done() or outcome.set_result(False))
    await client.connect(url, headers={"Origin": origin} if origin else {}, auth=auth, wait=False)
    try:
        return await asyncio.wait_for(outcome, 20)
    finally:
        await client.disconnect()


async def ignore(message: UserMessage) -> None:
    pass


async def test_the_socketio_connect_handler_refuses_foreign_origins(serve, monkeypatch):
    monkeypatch.setenv("FAQBOT_CORS", f"{ALLOWED} http://localhost:8080")
    async with serve(SocketIOInput(), ignore) as url:
        assert await connects(url, ALLOWED) is True
        assert await connects(url, None) is True  # not a browser: CORS does not apply
        assert await connects(url, FOREIGN) is False


async def test_rasas_own_connect_handler_still_decides_for_allowed_origins(serve, monkeypatch):
    """With a jwt_key Rasa's handler refuses clients without a valid token: the origin
    check must hand allowed connections on to it, not accept them itself."""
    monkeypatch.setenv("FAQBOT_CORS", ALLOWED)
    async with serve(SocketIOInput(jwt_key=JWT_KEY), ignore) as url:
        assert await connects(url, ALLOWED) is False
        token = jwt.encode({"user": {"username": "kunde"}}, JWT_KEY, algorithm="HS256")
        assert await connects(url, ALLOWED, auth={"token": token}) is True
        assert await connects(url, FOREIGN, auth={"token": token}) is False


async def test_widget_messages_reach_rasa_cleaned_with_the_widget_output_channel(serve, monkeypatch):
    monkeypatch.setenv("FAQBOT_CORS", ALLOWED)
    received: list[UserMessage] = []
    replies: asyncio.Queue = asyncio.Queue()

    async def on_new_message(message: UserMessage) -> None:
        received.append(message)
        await message.output_channel.send_text_message(message.sender_id, "Guten Tag!")

    async with serve(SocketIOInput(session_persistence=True), on_new_message) as url:
        client = socketio.AsyncClient()
        confirmed: asyncio.Queue = asyncio.Queue()
        client.on("session_confirm", confirmed.put_nowait)
        client.on("bot_uttered", replies.put_nowait)
        await client.connect(url, headers={"Origin": ALLOWED}, wait_timeout=20)
        try:
            await client.emit("session_request", {"session_id": "sitzung"})  # as the widget does
            issued = await asyncio.wait_for(confirmed.get(), 20)  # the server's own id, not the client's
            await client.emit("user_uttered", {"message": "Rech\x00nung", "session_id": issued})
            assert (await asyncio.wait_for(replies.get(), 20))["text"] == "Guten Tag!"
            await client.emit("user_uttered", {"message": "x" * 60_000, "session_id": issued})
            assert (await asyncio.wait_for(replies.get(), 20))["text"] == TOO_LONG
        finally:
            await client.disconnect()
    conversation = issued.split(".")[0]
    assert issued != "sitzung"
    assert [(m.text, m.sender_id, type(m.output_channel)) for m in received] == [
        ("Rechnung", conversation, WidgetOutput)
    ]


def test_support_api_stops_the_server_if_rasa_did_not_set_up_what_it_reads():
    """check_server runs in the real servers once they have started (see the start test
    above); here on a Sanic app without Rasa's agent."""
    with pytest.raises(PatchTargetError, match=rf"^{re.escape(support.PATCH)} relies on app\.ctx\.agent, "):
        support.check_server(Sanic(f"test_{uuid.uuid4().hex}", configure_logging=False))
