"""Rasa's REST channel, with a clear answer to malformed requests.

Same URL and JSON as Rasa's own ``rest`` channel (POST /webhooks/rest/webhook,
``{"sender": "...", "message": "..."}``). The stock channel answers a missing or
non-text ``message`` with an empty 200 and an empty body with a 500; integrations
then cannot tell what went wrong. Here such requests get a 400 with a German message,
control characters are removed before the text is stored, and an error while
processing a message still gives the customer a reply.

It overrides Rasa's private ``RestInput._extract_message`` and relies on Sanic 21.12's
``request.json`` and blueprint middleware: checked when Rasa imports the channel
(``check_targets``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.rest import RestInput as RasaRestInput
from sanic import Blueprint, response
from sanic.exceptions import InvalidUsage
from sanic.request import Request

from faqbot.core.text import clean_text
from faqbot.server import patches
from faqbot.server.patches import require_attribute, require_version

PATCH = "faqbot.server.channels.rest.RestInput (input validation)"


def check_targets() -> None:
    require_version("rasa", patches.RASA_VERSION, PATCH)
    require_version("sanic", patches.SANIC_VERSION, PATCH)
    require_attribute(RasaRestInput, "_extract_message", PATCH)


check_targets()  # when Rasa loads the channel (credentials.yml), before it serves

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 50_000
# Limits of one request (issue "safe in front of strangers"): the body is checked before it
# is parsed, so an oversized request never reaches the conversation store.
MAX_BODY_BYTES = 64 * 1024
MAX_SENDER_CHARS = 128
MAX_METADATA_BYTES = 4 * 1024
EXPECTED = 'Erwartet wird JSON der Form {"sender": "<Gesprächs-ID>", "message": "<Text>"}.'
PROCESSING_ERROR = (
    "Entschuldigung, bei der Verarbeitung Ihrer Nachricht ist ein Fehler "
    "aufgetreten. Bitte versuchen Sie es gleich noch einmal oder wenden Sie "
    "sich an unseren Kundenservice."
)


def _bad_request(code: str, message: str, status: int = 400) -> response.HTTPResponse:
    return response.json({"error": code, "message": f"{message} {EXPECTED}"}, status=status)


def request_problem(request: Request) -> response.HTTPResponse | None:
    """Why this webhook request cannot be processed, as an HTTP error; None if it can."""
    if len(request.body or b"") > MAX_BODY_BYTES:
        return _bad_request("request_too_large", f"Die Anfrage ist größer als {MAX_BODY_BYTES // 1024} KB.", 413)
    try:
        body = request.json
    except InvalidUsage:
        return _bad_request("invalid_json", "Die Anfrage enthält kein gültiges JSON.")
    if not isinstance(body, dict):
        return _bad_request("invalid_body", "Die Anfrage ist leer oder kein JSON-Objekt.")
    if not isinstance(body.get("message"), str):
        return _bad_request("invalid_message", "Das Feld „message“ fehlt oder ist kein Text.")
    problem = sender_problem(body.get("sender"))
    if problem:
        return _bad_request("invalid_sender", problem)
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return _bad_request("invalid_metadata", "Das Feld „metadata“ muss ein JSON-Objekt sein.")
    if metadata and len(json.dumps(metadata, ensure_ascii=False).encode("utf-8")) > MAX_METADATA_BYTES:
        return _bad_request(
            "metadata_too_large", f"Das Feld „metadata“ ist größer als {MAX_METADATA_BYTES // 1024} KB.", 413
        )
    if len(body["message"]) > MAX_MESSAGE_CHARS:
        return _bad_request("message_too_long", f"Die Nachricht ist länger als {MAX_MESSAGE_CHARS} Zeichen.", 413)
    return None


def sender_problem(sender: Any) -> str | None:
    """Why ``sender`` cannot name a conversation, or None. Without one, Rasa would put every
    such request into one shared conversation "default"."""
    if not isinstance(sender, str) or not sender.strip():
        return "Das Feld „sender“ (die Gesprächs-ID) fehlt oder ist leer."
    if len(sender) > MAX_SENDER_CHARS:
        return f"Das Feld „sender“ ist länger als {MAX_SENDER_CHARS} Zeichen."
    if not sender.isprintable():
        return "Das Feld „sender“ enthält Steuerzeichen oder Zeilenumbrüche."
    return None


async def process_or_apologise(on_new_message: Callable[[UserMessage], Awaitable[Any]], message: UserMessage) -> None:
    """Process a message; if that fails, the customer still gets an answer (error logged)."""
    try:
        await on_new_message(message)
    except Exception:
        logger.exception("Message from %s could not be processed", message.sender_id)
        await message.output_channel.send_text_message(message.sender_id, PROCESSING_ERROR)


class RestInput(RasaRestInput):
    @classmethod
    def name(cls) -> str:
        return "rest"

    def _extract_message(self, req: Request) -> str | None:
        return clean_text(super()._extract_message(req))

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        async def handle(message: UserMessage) -> None:
            await process_or_apologise(on_new_message, message)

        webhook = super().blueprint(handle)

        @webhook.middleware("request")
        async def validate(request: Request) -> response.HTTPResponse | None:
            if request.method == "POST":
                return request_problem(request)
            return None

        return webhook
