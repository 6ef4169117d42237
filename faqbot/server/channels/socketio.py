"""Rasa's socketio channel (the website widget), limited to the website's origins.

Same events and settings as Rasa's own ``socketio`` channel (credentials.yml), plus:

* Only the origins in ``FAQBOT_CORS`` (separated by spaces; ``make run`` sets it to the
  help-centre page, default ``http://localhost:8080``) may connect. Rasa's ``--cors``
  covers HTTP requests only; browsers apply no CORS to WebSockets, so the socket.io
  server itself must check the Origin header.
* Messages are cleaned like on the REST channel, and an over-long message or an error
  while processing gets a German reply instead of silence.
* ``custom`` payloads (faq_id, ticket id: meant for REST integrations) are not sent to
  the widget: Rasa 3.6 passes them to ``emit()`` as keyword arguments, which fails.

The origin check wraps Rasa's connect handler, taken from python-socketio's handler table
(no public way to read it), and reads the Origin header from the environ python-engineio
builds: versions checked when Rasa imports the channel (``check_targets``), the handler
when Rasa builds the channel's blueprint, both before the server serves.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.socketio import SocketIOInput as RasaSocketIOInput
from rasa.core.channels.socketio import SocketIOOutput
from sanic import Blueprint

from faqbot.core.text import clean_text
from faqbot.server import patches
from faqbot.server.channels.rest import MAX_MESSAGE_CHARS, process_or_apologise
from faqbot.server.patches import PatchTargetError, require_attribute, require_version
from faqbot.server.web import DEFAULT_PORT as DEFAULT_WEB_PORT
from faqbot.server.web import origins

logger = logging.getLogger(__name__)

PATCH = "faqbot.server.channels.socketio.SocketIOInput (origin check)"


def check_targets() -> None:
    require_version("rasa", patches.RASA_VERSION, PATCH)
    require_version("sanic", patches.SANIC_VERSION, PATCH)
    require_version("python-socketio", patches.PYTHON_SOCKETIO_VERSION, PATCH)
    require_version("python-engineio", patches.PYTHON_ENGINEIO_VERSION, PATCH)


check_targets()  # when Rasa loads the channel (credentials.yml), before it serves


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


def allowed_origins() -> list[str]:
    return os.environ.get("FAQBOT_CORS", DEFAULT_ORIGINS).split()


class WidgetOutput(SocketIOOutput):
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
            message.output_channel = self.get_output_channel()
            await process_or_apologise(on_new_message, message)

        webhook = super().blueprint(handle)
        # Rasa switches the socket.io server's own CORS handling off (Sanic's --cors sets
        # the headers), which also switches off its origin check: check it on connect.
        namespace = self.namespace or "/"
        rasa_connect = rasa_connect_handler(self.sio, namespace)
        allowed = allowed_origins()

        async def connect(sid: str, environ: dict, auth: dict | None = None) -> bool:
            origin = environ.get("HTTP_ORIGIN")
            if origin and origin not in allowed:  # no Origin: not a browser, CORS is moot
                logger.warning("Socket.IO connection from %s refused (FAQBOT_CORS: %s)", origin, " ".join(allowed))
                return False
            return await rasa_connect(sid, environ, auth)

        self.sio.on("connect", connect, namespace=namespace)
        return webhook

    def get_output_channel(self) -> WidgetOutput | None:
        return WidgetOutput(self.sio, self.bot_message_evt) if self.sio else super().get_output_channel()
