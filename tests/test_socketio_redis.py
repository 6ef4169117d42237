"""The widget's Socket.IO channel on several instances (python-socketio's Redis manager), and
its answer when a store or lock is down.

Each instance is the channel's blueprint in a real Sanic server (conftest ``serve``), with a
stand-in for Rasa's agent; the instances share the real Redis of the ``redis`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import time

import redis as redis_client
from conftest import free_port
from rasa.core.channels.channel import UserMessage
from test_security import ORIGIN, Widget, greet

from faqbot.server import failures
from faqbot.server.channels.socketio import SocketIOInput

CLOSED = "Ihr Ticket wurde vom Support-Team geschlossen."


def use_redis(monkeypatch, port: int) -> None:
    """The lock store's variables (endpoints.production.yml), which the channel reads too."""
    monkeypatch.setenv("FAQBOT_CORS", ORIGIN)
    settings = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port), "REDIS_PASSWORD": "", "REDIS_DB": "0"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)


async def listening(port: int, channel: str = "faqbot-socketio-0") -> None:
    """Until an instance listens on the channel (python-socketio subscribes after the first connection)."""
    client = redis_client.Redis(port=port)
    deadline = time.monotonic() + 10
    while client.pubsub_numsub(channel)[0][1] < 1:
        assert time.monotonic() < deadline, "no instance subscribed to the Socket.IO channel"
        await asyncio.sleep(0.05)


async def test_a_message_to_a_conversation_reaches_its_widget_on_another_instance(serve, monkeypatch, redis_url):
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    use_redis(monkeypatch, port)
    instance_a, instance_b = SocketIOInput(session_persistence=True), SocketIOInput(session_persistence=True)
    async with serve(instance_a, greet) as url_a, serve(instance_b, greet):
        widget = Widget(url_a)
        try:
            issued = await widget.start()
            conversation = issued.split(".")[0]
            await listening(port)
            # The support team closes the ticket through instance B, whose output channel pushes
            # the bot's message to the conversation's room (channels/support.py, _end_handoff).
            await instance_b.get_output_channel().send_text_message(conversation, CLOSED)
            assert (await asyncio.wait_for(widget.replies.get(), 10))["text"] == CLOSED
            # The widget's own turns are answered as before (through Redis as well).
            assert await widget.say("Hallo", issued) == f"Hallo {conversation}"
        finally:
            await widget.client.disconnect()


async def test_the_redis_channel_carries_json_not_pickle(serve, monkeypatch, redis_url):
    """python-socketio pickles by default: whoever could write to Redis could run code in every instance."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    use_redis(monkeypatch, port)
    channel = SocketIOInput(session_persistence=True)
    subscriber = redis_client.Redis(port=port).pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe("faqbot-socketio-0")
    async with serve(channel, greet):
        await channel.get_output_channel().send_text_message("gespraech", CLOSED)
        message = None
        for _ in range(100):
            message = subscriber.get_message(timeout=0.1)
            if message:
                break
    assert message is not None
    published = json.loads(message["data"])  # pickle would not load as JSON
    assert (published["method"], published["room"], published["data"]["text"]) == ("emit", "gespraech", CLOSED)


async def test_with_redis_down_the_widget_still_gets_answers_from_its_instance(serve, monkeypatch):
    use_redis(monkeypatch, free_port())  # nothing listens there
    async with serve(SocketIOInput(session_persistence=True), greet) as url:
        widget = Widget(url)
        try:
            issued = await widget.start()
            assert await widget.say("Hallo", issued) == f"Hallo {issued.split('.')[0]}"
        finally:
            await widget.client.disconnect()


async def test_a_turn_that_cannot_be_stored_gets_the_german_notice(serve, monkeypatch):
    """The lock or the tracker store is down: the widget says so instead of staying silent."""
    monkeypatch.setenv("FAQBOT_CORS", ORIGIN)

    async def store_down(message: UserMessage) -> None:
        raise failures.ServiceUnavailable("tracker store")

    async with serve(SocketIOInput(session_persistence=True), store_down) as url:
        widget = Widget(url)
        try:
            issued = await widget.start()
            assert await widget.say("Wie bekomme ich meine Rechnung?", issued) == failures.MESSAGE
        finally:
            await widget.client.disconnect()
