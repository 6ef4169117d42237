"""Rasa's socketio channel (the website widget), limited to the website's origins.

Same events and settings as Rasa's own ``socketio`` channel (credentials.yml), plus:

* Only the origins in ``FAQBOT_CORS`` (separated by spaces; ``make run`` sets it to the
  help-centre page, default ``http://localhost:8080``) may connect. Rasa's ``--cors``
  covers HTTP requests only; browsers apply no CORS to WebSockets, so the socket.io
  server itself must check the Origin header.
* Messages are cleaned like on the REST channel, and an over-long message or an error
  while processing gets a German reply instead of silence.
* ``custom`` payloads (faq_id, ticket id: meant for REST integrations) are not sent to
  the widget: Rasa 3.6 passes them to ``emit()`` as keyword arguments, which fails. An FAQ
  answer's last part carries ``feedback`` instead: a token, signed for this conversation,
  that the widget sends back with the customer's rating („War diese Antwort hilfreich?“,
  event ``feedback``, acknowledged with ``{"ok": …}``). The rating goes to the review queue
  (``ReviewQueueBroker.rate``); a forged, foreign or day-old token is refused.
* **Session ids come from the server.** Rasa's channel takes any ``session_id`` a client
  names, so whoever knew another customer's id received that customer's replies and could
  write into the conversation. Here the server issues each session id as
  ``<conversation id>.<signature>``, signed with ``FAQBOT_SESSION_SECRET`` (``session_confirm``;
  the widget keeps it and sends it back after a reload). An id it did not sign is replaced by
  a new one. The conversation id alone (what tickets, logs and the support team see) does
  not open the conversation; the signature stays in the customer's browser. Messages always
  go to the conversation of that connection, whatever ``session_id`` they carry.
* **The browser is not trusted with identity:** ``metadata.customer`` is dropped (only
  authenticated REST integrations may pass it), other metadata is capped at 4 KB.
* Messages per conversation and per address are limited like on REST (German notice).
* A turn that was not stored (``failures.ServiceUnavailable``: store or lock down) gets
  ``failures.MESSAGE`` (``rest.process_or_apologise``).
* **Several instances.** With ``REDIS_HOST`` set (and ``REDIS_PORT``, ``REDIS_PASSWORD``,
  ``REDIS_DB``: the lock store's variables), python-socketio shares its emits through Redis
  (``socketio.AsyncRedisManager``, on redis-py's ``redis.asyncio``): a message to a conversation's
  room, such as the support team closing its ticket on another instance, reaches the widget
  wherever it is connected. On the channel JSON instead of python-socketio's pickle, so whoever can
  write to Redis cannot run code here; with Redis down, a message still reaches the connections
  of this instance. Rasa builds the ``AsyncServer`` in its blueprint without a way to pass the
  manager: it is passed in while Rasa builds it, and checked afterwards.

The origin check wraps Rasa's connect handler, taken from python-socketio's handler table
(no public way to read it), and reads the Origin header from the environ python-engineio
builds: versions checked when Rasa imports the channel (``check_targets``), the handler
when Rasa builds the channel's blueprint, both before the server serves.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import engineio
import rasa.core.channels.socketio
import sanic.response
import socketio
from rasa.core.channels.channel import UserMessage
from rasa.core.channels.socketio import SocketIOInput as RasaSocketIOInput
from rasa.core.channels.socketio import SocketIOOutput
from redis.exceptions import RedisError
from sanic import Blueprint

from faqbot.core import shared_secrets
from faqbot.core.rate_limit import RateLimiter, too_many_message
from faqbot.core.text import clean_text
from faqbot.server import patches
from faqbot.server.channels.rest import MAX_MESSAGE_CHARS, MAX_METADATA_BYTES, process_or_apologise
from faqbot.server.patches import PatchTargetError, require_attribute, require_version
from faqbot.server.review_broker import ReviewQueueBroker
from faqbot.server.web import DEFAULT_PORT as DEFAULT_WEB_PORT
from faqbot.server.web import origins

logger = logging.getLogger(__name__)

PATCH = "faqbot.server.channels.socketio.SocketIOInput (origin check, Redis across instances)"


def check_targets() -> None:
    require_version("rasa", patches.RASA_VERSION, PATCH)
    require_version("sanic", patches.SANIC_VERSION, PATCH)
    require_version("python-socketio", patches.PYTHON_SOCKETIO_VERSION, PATCH)
    require_version("python-engineio", patches.PYTHON_ENGINEIO_VERSION, PATCH)
    if require_attribute(rasa.core.channels.socketio, "AsyncServer", PATCH) is not socketio.AsyncServer:
        raise PatchTargetError(f"{PATCH}: Rasa's socketio channel no longer builds python-socketio's AsyncServer.")
    for name in ("_publish", "_listen", "_redis_connect"):
        require_attribute(socketio.AsyncRedisManager, name, PATCH)


check_targets()  # when Rasa loads the channel (credentials.yml), before it serves


def quiet_closed_connections() -> None:
    """No traceback in the server log each time a widget's connection closes.

    * engine.io's Sanic route returns nothing for a WebSocket that ended, and Sanic 21.12
      accepts that only from handlers marked ``is_websocket`` (else it logs „Invalid response
      type None“ with a traceback: sanic-org/sanic#2572).
    * A long poll (the transport before the upgrade to WebSocket, or without WebSocket) whose
      client went away meanwhile gets its response when the connection is already gone, and
      Sanic logs two tracebacks (``'NoneType' object has no attribute 'is_closing'``, „Handler
      produced no response“). Its own way to end a request whose client left is
      ``CancelledError``, logged as one line at INFO: raised here instead.
    * A request for a session that closed a moment before (a long poll racing the client's
      disconnect) makes python-engineio 4.7.1 raise ``KeyError`` („Session is disconnected“)
      instead of answering 400 as it does for unknown sessions: answered 400 here.

    Versions checked by ``check_targets``."""
    handle_request = require_attribute(engineio.AsyncServer, "handle_request", PATCH)
    if getattr(handle_request, "faqbot_quiet", False):
        return

    @functools.wraps(handle_request)
    async def handle_request_quietly(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            response = await handle_request(self, *args, **kwargs)
        except KeyError as error:
            if error.args not in (("Session is disconnected",), ("Session not found",)):
                raise
            return sanic.response.text("Invalid session", status=400)
        transport = getattr(args[0], "transport", None) if args else None
        if response is not None and transport is not None and transport.is_closing():
            raise asyncio.CancelledError  # the client left while its long poll waited
        return response

    handle_request_quietly.is_websocket = True  # a bound method reads its function's attributes
    handle_request_quietly.faqbot_quiet = True
    engineio.AsyncServer.handle_request = handle_request_quietly


quiet_closed_connections()


def rasa_connect_handler(sio: Any, namespace: str) -> Callable[..., Awaitable[bool]]:
    """The connect handler Rasa's blueprint registered, from python-socketio's handler table."""
    handler = require_attribute(sio, "handlers", PATCH).get(namespace, {}).get("connect")
    if handler is None:
        raise PatchTargetError(
            f"{PATCH} wraps the connect handler of Rasa's socketio channel, but Rasa registered none "
            f"in python-socketio's handler table (AsyncServer.handlers[{namespace!r}])."
        )
    return handler


DEFAULT_ORIGINS = " ".join(origins(DEFAULT_WEB_PORT))  # the help-centre page of `make run`
TOO_LONG = (
    f"Ihre Nachricht ist leider zu lang (mehr als {MAX_MESSAGE_CHARS} Zeichen). "
    "Bitte fassen Sie Ihre Frage in wenigen Sätzen zusammen."
)


UNREADABLE = "Ihre Nachricht konnte leider nicht gelesen werden. Bitte versuchen Sie es noch einmal."
FEEDBACK_FAILED = "Ihre Bewertung konnte leider nicht gespeichert werden. Bitte versuchen Sie es später noch einmal."
FEEDBACK_REFUSED = "Diese Antwort kann nicht mehr bewertet werden."
# An answer can be rated this long: as long as the review queue remembers its question.
FEEDBACK_MAX_AGE_S = 24 * 3600


def allowed_origins() -> list[str]:
    return os.environ.get("FAQBOT_CORS", DEFAULT_ORIGINS).split()


def _signature(nonce: str, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), nonce.encode("ascii"), hashlib.sha256).hexdigest()[:32]


def issue_session_id(secret: str) -> str:
    conversation_id = uuid.uuid4().hex
    return f"{conversation_id}.{_signature(conversation_id, secret)}"


def conversation_of(session_id: Any, secret: str) -> str | None:
    """The conversation id of a session id this server (or one with the same
    FAQBOT_SESSION_SECRET) issued; None for any other."""
    if not isinstance(session_id, str) or session_id.count(".") != 1:
        return None
    conversation_id, signature = session_id.split(".")
    if len(conversation_id) != 32 or not all(char in "0123456789abcdef" for char in conversation_id):
        return None
    return conversation_id if hmac.compare_digest(signature, _signature(conversation_id, secret)) else None


def feedback_token(conversation_id: str, faq_id: str, secret: str, now: float | None = None) -> str:
    """What the widget sends back with a rating: the FAQ, when it was answered, signed for
    this conversation."""
    answered_ms = str(round((time.time() if now is None else now) * 1000))
    return f"{faq_id}.{answered_ms}.{_feedback_signature(conversation_id, faq_id, answered_ms, secret)}"


def _feedback_signature(conversation_id: str, faq_id: str, answered_ms: str, secret: str) -> str:
    return _signature(f"feedback.{conversation_id}.{faq_id}.{answered_ms}", secret)


def rated_answer(token: Any, conversation_id: str, secret: str, now: float | None = None) -> tuple[str, float] | None:
    """(FAQ id, answer time) of a token this server signed for this conversation within
    ``FEEDBACK_MAX_AGE_S``; None for any other."""
    if not isinstance(token, str) or token.count(".") != 2 or not token.isascii():
        return None
    faq_id, answered_ms, signature = token.split(".")
    if not answered_ms.isdigit():
        return None
    expected = _feedback_signature(conversation_id, faq_id, answered_ms, secret)
    answered_at = int(answered_ms) / 1000
    age = (time.time() if now is None else now) - answered_at
    if not hmac.compare_digest(signature, expected) or not 0 <= age <= FEEDBACK_MAX_AGE_S:
        return None
    return faq_id, answered_at


def widget_metadata(raw: Any) -> dict[str, Any]:
    """The metadata a widget may pass: a JSON object of at most 4 KB, never ``customer``."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    if not isinstance(raw, dict):
        return {}
    metadata = {key: value for key, value in raw.items() if key != "customer"}
    if len(json.dumps(metadata, ensure_ascii=False).encode("utf-8")) > MAX_METADATA_BYTES:
        return {}
    return metadata


def connection_address(environ: dict) -> str:
    """python-engineio's Sanic driver sets REMOTE_ADDR to 127.0.0.1; Sanic's request knows better."""
    request = environ.get("sanic.request")
    return (request.remote_addr or request.ip) if request is not None else environ.get("REMOTE_ADDR", "?")


REDIS_RETRY_S = 1


class JsonRedisManager(socketio.AsyncRedisManager):
    """python-socketio's Redis manager, with JSON instead of pickle on the channel."""

    async def _publish(self, data: dict[str, Any]) -> Any:
        message = json.dumps(data)
        for _attempt in range(2):  # as python-socketio: once more on a new connection
            try:
                return await self.redis.publish(self.channel, message)
            except RedisError:
                self._redis_connect()
        logger.error("Socket.IO: Redis nicht erreichbar; Nachricht nur an die Verbindungen dieser Instanz")
        if data.get("method") == "emit":
            await self.emit(
                data["event"],
                data["data"],
                data["namespace"],
                room=data["room"],
                skip_sid=data["skip_sid"],
                ignore_queue=True,
            )

    async def _listen(self) -> AsyncIterator[dict[str, Any]]:
        try:
            async for message in super()._listen():
                try:
                    data = json.loads(message)
                except ValueError:
                    logger.warning("Socket.IO: unlesbare Nachricht auf dem Redis-Kanal verworfen")
                    continue
                if isinstance(data, dict):
                    yield data  # python-socketio takes a dict as it is, and never unpickles it
        except RedisError:  # python-socketio would try again at once, without end
            logger.error("Socket.IO: Redis nicht erreichbar; neuer Versuch in %d s", REDIS_RETRY_S)
            await asyncio.sleep(REDIS_RETRY_S)


def redis_manager() -> JsonRedisManager | None:
    """python-socketio's Redis manager if REDIS_HOST is set (several instances), else None."""
    host = os.environ.get("REDIS_HOST")
    if not host:
        return None
    db = int(os.environ.get("REDIS_DB") or 0)
    options = {
        "host": host,
        "port": int(os.environ.get("REDIS_PORT") or 6379),
        "db": db,
        "password": os.environ.get("REDIS_PASSWORD") or None,
        "socket_connect_timeout": 2,
    }
    # Pub/sub channels are shared by all databases of a Redis server: the database in the name.
    return JsonRedisManager("redis://", channel=f"faqbot-socketio-{db}", redis_options=options)


class WidgetOutput(SocketIOOutput):
    def __init__(self, sio: Any, bot_message_evt: str, secret: str) -> None:
        super().__init__(sio, bot_message_evt)
        self.secret = secret

    async def send_response(self, recipient_id: str, message: dict[str, Any]) -> None:
        custom = message.get("custom")
        faq_id = custom.get("faq_id") if isinstance(custom, dict) else None
        extras = [key for key in ("buttons", "quick_replies", "image", "attachment", "elements") if message.get(key)]
        if not faq_id or not message.get("text") or extras:
            return await super().send_response(recipient_id, message)
        # An FAQ answer (split into paragraphs, as Rasa does): the rating under its last part.
        *parts, last = message["text"].strip().split("\n\n")
        for part in parts:
            await self._send_message(recipient_id, {"text": part})
        await self._send_message(
            recipient_id, {"text": last, "feedback": feedback_token(recipient_id, faq_id, self.secret)}
        )

    async def send_custom_json(self, recipient_id: str, json_message: dict[str, Any], **kwargs: Any) -> None:
        logger.debug("custom payload for %s not sent to the widget: %s", recipient_id, json_message)


class SocketIOInput(RasaSocketIOInput):
    @classmethod
    def name(cls) -> str:
        return "socketio"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        async def handle(message: UserMessage) -> None:
            text = clean_text(message.text or "")
            if len(text) > MAX_MESSAGE_CHARS:
                await message.output_channel.send_text_message(message.sender_id, TOO_LONG)
                return
            message.text = text
            await process_or_apologise(on_new_message, message)

        webhook = self._rasa_blueprint(handle, redis_manager())
        # Rasa switches the socket.io server's own CORS handling off (Sanic's --cors sets
        # the headers), which also switches off its origin check: check it on connect.
        namespace = self.namespace or "/"
        sio = self.sio
        rasa_connect = rasa_connect_handler(sio, namespace)
        allowed = allowed_origins()
        secret = shared_secrets.require("FAQBOT_SESSION_SECRET")
        per_conversation = RateLimiter.from_environment("CONVERSATION")
        per_conversation_day = RateLimiter.from_environment("CONVERSATION_DAY")
        per_client = RateLimiter.from_environment("CLIENT")

        async def connect(sid: str, environ: dict, auth: dict | None = None) -> bool:
            origin = environ.get("HTTP_ORIGIN")
            if origin and origin not in allowed:  # no Origin: not a browser, CORS is moot
                logger.warning("Socket.IO connection from %s refused (FAQBOT_CORS: %s)", origin, " ".join(allowed))
                return False
            address = connection_address(environ)
            if per_client.allow(address):
                logger.warning("Socket.IO: zu viele Verbindungen von %s abgewiesen", address)
                return False
            await sio.save_session(sid, {"address": address}, namespace=namespace)
            return await rasa_connect(sid, environ, auth)

        # data=None: python-socketio passes nothing for an event a client sent without data.
        async def session_request(sid: str, data: Any = None) -> str:
            requested = data.get("session_id") if isinstance(data, dict) else None
            conversation_id = conversation_of(requested, secret)
            session_id = requested if conversation_id else issue_session_id(secret)
            if requested and not conversation_id:
                logger.info("Socket.IO: nicht ausgestellte Sitzungs-ID durch eine neue ersetzt")
            conversation_id = session_id.split(".")[0]
            session = await sio.get_session(sid, namespace=namespace)
            session["conversation_id"] = conversation_id
            await sio.save_session(sid, session, namespace=namespace)
            # The bot's replies go to the room of the conversation (Rasa's SocketIOOutput).
            sio.enter_room(sid, conversation_id, namespace=namespace)
            # To this connection, which is on this instance: not through Redis.
            await sio.emit("session_confirm", session_id, room=sid, namespace=namespace, ignore_queue=True)
            return conversation_id

        async def user_uttered(sid: str, data: Any = None) -> None:
            session = await sio.get_session(sid, namespace=namespace)
            # A client that skipped session_request gets a conversation of its own.
            conversation_id = session.get("conversation_id") or await session_request(sid, {})
            output = self.get_output_channel()
            if not isinstance(data, dict) or not isinstance(data.get("message"), str):
                await output.send_text_message(conversation_id, UNREADABLE)
                return
            wait = (
                per_client.allow(session.get("address", "?"))
                or per_conversation.allow(conversation_id)
                or per_conversation_day.allow(conversation_id)
            )
            if wait:
                await output.send_text_message(conversation_id, too_many_message(wait))
                return
            metadata = widget_metadata(data.get(self.metadata_key))
            text = data["message"]
            await handle(UserMessage(text, output, conversation_id, input_channel=self.name(), metadata=metadata))

        async def feedback(sid: str, data: Any = None) -> dict[str, Any]:
            session = await sio.get_session(sid, namespace=namespace)
            conversation_id = session.get("conversation_id")
            token = data.get("token") if isinstance(data, dict) else None
            helpful = data.get("helpful") if isinstance(data, dict) else None
            rated = rated_answer(token, conversation_id, secret) if conversation_id else None
            if rated is None or not isinstance(helpful, bool):
                return {"ok": False, "message": FEEDBACK_REFUSED}
            if per_client.allow(session.get("address", "?")):
                return {"ok": False, "message": FEEDBACK_FAILED}
            request = sio.get_environ(sid, namespace=namespace).get("sanic.request")
            broker = request.app.ctx.agent.tracker_store.event_broker if request is not None else None
            if not isinstance(broker, ReviewQueueBroker):
                logger.error("Bewertung nicht gespeichert: kein ReviewQueueBroker als event_broker (endpoints.yml)")
                return {"ok": False, "message": FEEDBACK_FAILED}
            faq_id, answered_at = rated
            if not broker.rate(conversation_id, faq_id, helpful, answered_at):
                return {"ok": False, "message": FEEDBACK_FAILED}
            return {"ok": True}

        sio.on("connect", connect, namespace=namespace)
        sio.on("session_request", session_request, namespace=namespace)
        sio.on(self.user_message_evt, user_uttered, namespace=namespace)
        sio.on("feedback", feedback, namespace=namespace)
        return webhook

    def _rasa_blueprint(self, handle: Callable[[UserMessage], Awaitable[Any]], manager: Any) -> Blueprint:
        """Rasa's blueprint; its AsyncServer made with ``manager`` if there is one."""
        if manager is None:
            return super().blueprint(handle)
        rasa_server_class = rasa.core.channels.socketio.AsyncServer
        rasa.core.channels.socketio.AsyncServer = functools.partial(rasa_server_class, client_manager=manager)
        try:
            webhook = super().blueprint(handle)
        finally:
            rasa.core.channels.socketio.AsyncServer = rasa_server_class
        if require_attribute(self.sio, "manager", PATCH) is not manager:
            raise PatchTargetError(f"{PATCH}: Rasa's socketio channel built its AsyncServer without the Redis manager.")
        return webhook

    def get_output_channel(self) -> WidgetOutput | None:
        if not self.sio:
            return super().get_output_channel()
        return WidgetOutput(self.sio, self.bot_message_evt, shared_secrets.require("FAQBOT_SESSION_SECRET"))
