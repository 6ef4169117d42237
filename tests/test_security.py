"""Trust boundaries (README, "Security"): who may call what, with which credential, and the limits.

The first part serves the channels in a real Sanic server (as Rasa serves them) with a
stand-in for Rasa's agent; the second part attacks the real servers as `make run` starts them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import sqlite3
import time

import aiohttp
import pytest
import requests
import socketio
from conftest import bot_servers, running
from helpers import texts
from rasa.core.channels.channel import UserMessage

from faqbot.server.channels.rest import NO_REPLY, RestInput, signed_callback
from faqbot.server.channels.socketio import SocketIOInput, issue_session_id

TOKEN = "rest-integration-token-for-the-security-tests-0123"
ORIGIN = "http://hilfe.example"


async def greet(message: UserMessage) -> None:
    await message.output_channel.send_response(message.sender_id, {"text": f"Hallo {message.sender_id}"})


def post(http: aiohttp.ClientSession, url: str, body: dict, token: str | None = TOKEN, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.post(f"{url}/webhooks/rest/webhook", json=body, headers=headers, **kwargs)


# --- the REST channel ---


async def test_rest_answers_only_integrations_with_a_token(serve, monkeypatch, caplog):
    monkeypatch.setenv("FAQBOT_REST_TOKEN_HELPDESK", TOKEN)
    received: list[UserMessage] = []

    async def on_new_message(message: UserMessage) -> None:
        received.append(message)
        await greet(message)

    wrong = "falscher-token-" + "x" * 40
    async with serve(RestInput(), on_new_message) as url, aiohttp.ClientSession() as http:
        body = {"sender": "kunde", "message": "Hallo"}
        async with post(http, url, body, token=None) as reply:
            assert reply.status == 401 and "Authorization: Bearer" in (await reply.json())["message"]
        async with post(http, url, body, token=wrong) as reply:
            assert reply.status == 401 and (await reply.json())["message"] == "Der angegebene Token ist ungültig."
        async with post(http, url, body) as reply:
            assert reply.status == 200 and await reply.json() == [{"recipient_id": "kunde", "text": "Hallo kunde"}]
    assert [message.sender_id for message in received] == ["kunde"]  # refused requests reach nothing
    assert "ungültiger Token von 127.0.0.1" in caplog.text and wrong not in caplog.text


async def test_rest_refuses_short_tokens_at_start(monkeypatch):
    monkeypatch.setenv("FAQBOT_REST_TOKEN_HELPDESK", "kurz")
    with pytest.raises(SystemExit, match="FAQBOT_REST_TOKEN_HELPDESK ist zu kurz"):
        RestInput().blueprint(greet)


@pytest.mark.parametrize(
    "customer",
    [
        {"email": "kunde@example.org\r\nBcc: alle@example.org"},
        {"email": "kein-at-zeichen.example.org"},
        {"email": "a" * 250 + "@example.org"},
        {"id": "K-1\n2"},
        {"id": ""},
        {"email": "kunde@example.org", "telefon": "0123"},
        "kunde@example.org",
    ],
)
async def test_rest_refuses_customer_data_that_would_break_a_ticket(serve, monkeypatch, customer):
    monkeypatch.setenv("FAQBOT_REST_TOKEN_HELPDESK", TOKEN)
    received: list[UserMessage] = []

    async def on_new_message(message: UserMessage) -> None:
        received.append(message)
        await greet(message)

    async with serve(RestInput(), on_new_message) as url, aiohttp.ClientSession() as http:
        body = {"sender": "kunde", "message": "Hallo", "metadata": {"customer": customer}}
        async with post(http, url, body) as reply:
            assert reply.status == 400 and (await reply.json())["error"] == "invalid_customer"
        valid = {"id": "K-4711", "email": "kunde@example.org"}
        async with post(http, url, {**body, "metadata": {"customer": valid}}) as reply:
            assert reply.status == 200
    assert [message.metadata for message in received] == [{"customer": valid, "integration": "helpdesk"}]


async def test_rest_notes_the_integration_from_its_token_never_from_the_caller(serve, monkeypatch):
    monkeypatch.setenv("FAQBOT_REST_TOKEN_HELPDESK", TOKEN)
    monkeypatch.setenv("FAQBOT_REST_TOKEN_CRM", "crm-" + TOKEN)
    received: list[UserMessage] = []

    async def on_new_message(message: UserMessage) -> None:
        received.append(message)
        await greet(message)

    async with serve(RestInput(), on_new_message) as url, aiohttp.ClientSession() as http:
        # The support team's replies go to the integration's callback: a caller cannot redirect them.
        body = {"sender": "kunde", "message": "Hallo", "metadata": {"integration": "crm", "seite": "/hilfe"}}
        async with post(http, url, body) as reply:
            assert reply.status == 200
    assert [message.metadata for message in received] == [{"seite": "/hilfe", "integration": "helpdesk"}]


def test_rest_callback_urls_are_checked_at_start_and_callbacks_signed_with_the_token(monkeypatch):
    monkeypatch.setenv("FAQBOT_REST_TOKEN_HELPDESK", TOKEN)
    monkeypatch.setenv("FAQBOT_REST_CALLBACK_URL_HELPDESK", "ftp://helpdesk.example/faqbot")
    with pytest.raises(SystemExit, match="FAQBOT_REST_CALLBACK_URL_HELPDESK ist keine http"):
        RestInput().blueprint(greet)
    monkeypatch.setenv("FAQBOT_REST_CALLBACK_URL_HELPDESK", "https://helpdesk.example/faqbot")
    monkeypatch.setenv("FAQBOT_REST_CALLBACK_URL_CRM", "https://crm.example/faqbot")  # no token of its own
    with pytest.raises(SystemExit, match="FAQBOT_REST_TOKEN_CRM nicht"):
        RestInput().blueprint(greet)
    monkeypatch.delenv("FAQBOT_REST_CALLBACK_URL_CRM")
    RestInput().blueprint(greet)
    callback = signed_callback("helpdesk", {"event": "reply", "messages": [{"recipient_id": "k", "text": "Grüße"}]})
    expected = "sha256=" + hmac.new(TOKEN.encode(), callback["body"].encode("utf-8"), hashlib.sha256).hexdigest()
    assert callback["url"] == "https://helpdesk.example/faqbot" and callback["signature"] == expected
    assert json.loads(callback["body"])["messages"][0]["text"] == "Grüße"
    assert signed_callback("crm", {}) is None and signed_callback(None, {}) is None  # no callback URL: none


async def test_rest_limits_requests_per_conversation_and_wrong_tokens_per_address(serve, monkeypatch):
    monkeypatch.setenv("FAQBOT_REST_TOKEN_HELPDESK", TOKEN)
    monkeypatch.setenv("FAQBOT_RATE_LIMIT_CONVERSATION", "3")
    monkeypatch.setenv("FAQBOT_RATE_LIMIT_FAILED_AUTH", "2")
    async with serve(RestInput(), greet) as url, aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(4):
            async with post(http, url, {"sender": "eilig", "message": "Hallo"}) as reply:
                statuses.append(reply.status)
                refused = await reply.json()
        assert statuses == [200, 200, 200, 429]
        assert int(reply.headers["Retry-After"]) > 0 and "Bitte warten Sie" in refused["message"]
        async with post(http, url, {"sender": "geduldig", "message": "Hallo"}) as reply:
            assert reply.status == 200  # other conversations go on
        statuses = []
        for _ in range(3):
            async with post(http, url, {"sender": "x", "message": "Hallo"}, token="geraten-" + "0" * 40) as reply:
                statuses.append(reply.status)
        # Then the address waits, even with the right token: guessing gets no answers.
        async with post(http, url, {"sender": "x", "message": "Hallo"}) as reply:
            statuses.append(reply.status)
        assert statuses == [401, 401, 429, 429]


async def test_a_turn_without_any_reply_gets_an_apology(serve, monkeypatch):
    """Rasa logs a failed custom action or an unreachable action server and sends nothing."""
    monkeypatch.setenv("FAQBOT_REST_TOKEN_HELPDESK", TOKEN)

    async def silent(message: UserMessage) -> None:
        pass

    async with serve(RestInput(), silent) as url, aiohttp.ClientSession() as http:
        async with post(http, url, {"sender": "kunde", "message": "Hallo"}) as reply:
            assert reply.status == 200 and texts(await reply.json()) == [NO_REPLY]


# --- the widget's Socket.IO channel ---


class Widget:
    """A socket.io client as the widget uses it."""

    def __init__(self, url: str) -> None:
        self.url, self.client = url, socketio.AsyncClient()
        self.confirmed: asyncio.Queue = asyncio.Queue()
        self.replies: asyncio.Queue = asyncio.Queue()
        self.client.on("session_confirm", self.confirmed.put_nowait)
        self.client.on("bot_uttered", self.replies.put_nowait)

    async def start(self, session_id: str | None = None) -> str:
        await self.client.connect(self.url, headers={"Origin": ORIGIN}, wait_timeout=20)
        await self.client.emit("session_request", {"session_id": session_id})
        return await asyncio.wait_for(self.confirmed.get(), 20)

    async def say(self, text: str, session_id: str, metadata: dict | None = None) -> str:
        await self.client.emit("user_uttered", {"message": text, "session_id": session_id, "metadata": metadata})
        return (await asyncio.wait_for(self.replies.get(), 20))["text"]


async def test_widget_sessions_are_issued_by_the_server_and_bound_to_their_connection(serve, monkeypatch):
    monkeypatch.setenv("FAQBOT_CORS", ORIGIN)
    received: list[UserMessage] = []

    async def on_new_message(message: UserMessage) -> None:
        received.append(message)
        await greet(message)

    async with serve(SocketIOInput(session_persistence=True), on_new_message) as url:
        alice, mallory = Widget(url), Widget(url)
        try:
            issued = await alice.start()
            conversation = issued.split(".")[0]
            assert await alice.say("Hallo", issued) == f"Hallo {conversation}"
            again = Widget(url)  # the same browser after a reload keeps its conversation
            assert await again.start(issued) == issued
            await again.client.disconnect()
            # Mallory knows the conversation id (from a ticket, say) or forges an id.
            for forged in (conversation, f"{conversation}.{'0' * 32}", "sitzung", issue_session_id("x" * 40)):
                await mallory.client.connect(url, headers={"Origin": ORIGIN}, wait_timeout=20)
                await mallory.client.emit("session_request", {"session_id": forged})
                given = await asyncio.wait_for(mallory.confirmed.get(), 20)
                assert given.split(".")[0] != conversation
                # Messages go to the connection's own conversation, whatever id they name.
                assert await mallory.say("Ich bin es", issued) == f"Hallo {given.split('.')[0]}"
                await mallory.client.disconnect()
            await asyncio.sleep(0.5)
            assert alice.replies.empty()  # Alice received nothing meant for Mallory
        finally:
            await alice.client.disconnect()
    assert [m.sender_id for m in received].count(conversation) == 1


async def test_the_widget_cannot_pass_customer_identity(serve, monkeypatch):
    monkeypatch.setenv("FAQBOT_CORS", ORIGIN)
    received: list[UserMessage] = []

    async def on_new_message(message: UserMessage) -> None:
        received.append(message)
        await greet(message)

    async with serve(SocketIOInput(session_persistence=True), on_new_message) as url:
        widget = Widget(url)
        try:
            issued = await widget.start()
            customer = {"customer": {"email": "fremd@example.org"}, "language": "de"}
            await widget.say("Hallo", issued, metadata=customer)
            await widget.say("Hallo", issued, metadata={"gross": "x" * 5000})
        finally:
            await widget.client.disconnect()
    assert [message.metadata for message in received] == [{"language": "de"}, {}]


async def test_the_widget_is_limited_per_conversation(serve, monkeypatch):
    monkeypatch.setenv("FAQBOT_CORS", ORIGIN)
    monkeypatch.setenv("FAQBOT_RATE_LIMIT_CONVERSATION", "2")
    async with serve(SocketIOInput(session_persistence=True), greet) as url:
        widget = Widget(url)
        try:
            issued = await widget.start()
            replies = [await widget.say("Hallo", issued) for _ in range(3)]
        finally:
            await widget.client.disconnect()
    assert replies[:2] == [f"Hallo {issued.split('.')[0]}"] * 2
    assert "Bitte warten Sie" in replies[2]


# --- the real servers, as `make run` starts them ---

SUPPORT_TOKEN = "support-token-for-the-security-tests-0123456789"


@pytest.fixture(scope="module")
def servers(model_path, tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("security")
    with running(bot_servers(model_path, var_dir, env={"FAQBOT_SUPPORT_TOKEN": SUPPORT_TOKEN})) as started:
        yield started


def log_of(servers, name: str) -> str:
    return (servers.log_dir / f"{name}.log").read_text(errors="replace")


def test_the_action_server_answers_only_the_rasa_server(servers):
    """Finding 1: a forged call could create a ticket with a made-up transcript and Reply-To."""
    forged = {
        "next_action": "action_escalate",
        "sender_id": "angreifer",
        "tracker": {"sender_id": "angreifer", "slots": {"customer_email": "angreifer@example.org"}, "events": []},
        "domain": {},
    }
    wrong = "geraten-" + "1" * 40
    for headers, params in (({}, {}), ({"Authorization": f"Bearer {wrong}"}, {}), ({}, {"token": wrong})):
        reply = requests.post(f"{servers.action_url}/webhook", json=forged, headers=headers, params=params, timeout=10)
        assert reply.status_code == 401 and "Zugriff verweigert" in reply.json()["message"]
    assert requests.get(f"{servers.action_url}/actions", timeout=10).status_code == 401
    assert requests.get(f"{servers.action_url}/health", timeout=10).status_code == 200
    tickets = servers.var_dir / "tickets.db"
    if tickets.exists():
        with sqlite3.connect(tickets) as db:
            assert db.execute("SELECT COUNT(*) FROM tickets").fetchone() == (0,)
    assert "ohne gültigen Token" in log_of(servers, "actions") and wrong not in log_of(servers, "actions")


def test_the_nlu_server_answers_only_with_its_token(servers):
    """Finding 6: any local user could DELETE /model and break every answer."""
    nlu, token = servers.nlu_url, servers.env["FAQBOT_NLU_TOKEN"]
    assert requests.delete(f"{nlu}/model", timeout=10).status_code == 401
    assert requests.delete(f"{nlu}/model", params={"token": "x" * 40}, timeout=10).status_code == 401
    parse = requests.post(f"{nlu}/model/parse", json={"text": "Rechnung"}, timeout=10)
    assert parse.status_code == 401 and "FAQBOT_NLU_TOKEN" in parse.json()["message"]
    assert requests.get(f"{nlu}/status", params={"token": token}, timeout=10).status_code == 200
    # The Rasa server's nlu endpoint sends the token in the body: customers still get answers.
    reply = requests.post(
        f"{servers.url}/webhooks/rest/webhook",
        json={"sender": "nach-delete", "message": "Wie erhalte ich meine Rechnung?"},
        headers={"Authorization": f"Bearer {servers.rest_token}"},
        timeout=30,
    )
    assert reply.status_code == 200 and "Rechnung" in " ".join(texts(reply.json()))


def test_rest_without_a_token_stores_nothing(servers):
    reply = requests.post(
        f"{servers.url}/webhooks/rest/webhook", json={"sender": "ohne-token", "message": "Hallo"}, timeout=10
    )
    assert reply.status_code == 401
    with sqlite3.connect(servers.var_dir / "tracker.db") as db:
        assert db.execute("SELECT COUNT(*) FROM events WHERE sender_id = 'ohne-token'").fetchone() == (0,)


def test_a_huge_request_is_refused_before_it_is_read(servers):
    """Finding 4: a 95 MB request was read and stored. Sanic now refuses anything over 1 MB
    from its Content-Length, before reading (and buffering) the body."""
    with socket.create_connection(("127.0.0.1", servers.port), timeout=10) as raw:
        raw.sendall(
            b"POST /webhooks/rest/webhook HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {servers.rest_token}\r\n".encode()
            + b"Content-Length: 95000000\r\n\r\n"
            + b'{"sender": "gross", "message": "'
        )
        assert raw.recv(200).startswith(b"HTTP/1.1 413")  # without waiting for the other 95 MB
    with sqlite3.connect(servers.var_dir / "tracker.db") as db:
        assert db.execute("SELECT COUNT(*) FROM events WHERE sender_id = 'gross'").fetchone() == (0,)


def test_support_api_logs_failed_logins_and_slows_down_guessing(servers):
    url = f"{servers.url}/webhooks/support/tickets"
    wrong = "geraten-" + "2" * 40
    statuses = [
        requests.get(url, headers={"Authorization": f"Bearer {wrong}"}, timeout=10).status_code for _ in range(11)
    ]
    assert statuses == [401] * 10 + [429]
    blocked = requests.get(url, headers={"Authorization": f"Bearer {SUPPORT_TOKEN}"}, timeout=10)
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert "Bitte warten Sie" in blocked.json()["message"]
    log = log_of(servers, "rasa")
    assert log.count("Support-API: ungültiger Token von 127.0.0.1") == 10 and wrong not in log


def test_a_dead_action_server_gets_the_customer_an_apology(servers):
    """Finding 7: it returned 200 [] (last in this module: the action server stays down)."""
    os.killpg(servers.processes[0].pid, signal.SIGKILL)
    servers.processes[0].wait(timeout=30)
    started = time.monotonic()
    reply = requests.post(
        f"{servers.url}/webhooks/rest/webhook",
        json={"sender": "ohne-actions", "message": "Wie erhalte ich meine Rechnung?"},
        headers={"Authorization": f"Bearer {servers.rest_token}"},
        timeout=60,
    )
    assert reply.status_code == 200 and texts(reply.json()) == [NO_REPLY]
    assert time.monotonic() - started < 30
