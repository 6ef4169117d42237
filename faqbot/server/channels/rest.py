"""Rasa's REST channel for the support team's integrations (help desk, CRM, messenger bridge).

Same URL and JSON as Rasa's own ``rest`` channel (POST /webhooks/rest/webhook,
``{"sender": "...", "message": "..."}``), plus what a public endpoint needs (README, "Security"):

* **Authentication.** Each integration sends ``Authorization: Bearer <token>``; the tokens
  come from the environment, one per integration: ``FAQBOT_REST_TOKEN_<NAME>`` (at least 32
  characters). Callers without a valid token are refused (401): a REST caller chooses its
  ``sender`` and with it the conversation, and may pass ``metadata.customer`` (``id``,
  ``email``, which becomes the ticket's contact and the mail's Reply-To), so only known
  integrations may. Customers on the website use the widget (Socket.IO channel). The
  customer's values are checked all the same (e-mail syntax, printable, length).
* **Limits.** Body at most 64 KB (checked before parsing), ``sender`` 1-128 printable
  characters, ``metadata`` a JSON object of at most 4 KB, requests per minute per
  conversation, per address and per integration (``faqbot.core.rate_limit``): German
  400/401/403/413/429 with a reason; nothing of a refused request is stored.
* **A reply every time.** Control characters are removed before the text is stored; an error
  while processing, a failed custom action or an unreachable action server (Rasa then logs the
  error and sends nothing) gives the customer a German apology instead of an empty reply.
* **Not stored, said so.** A turn that could not be stored (conversation lock or store
  unavailable, a concurrent turn of the same conversation: ``faqbot.server.failures``) is
  answered with 503, ``Retry-After`` and a German message, never with a 200: the
  integration sends the message again. (With ``?stream=true`` the 200 is sent before the
  turn runs: the German message is the reply.)

It overrides Rasa's private ``RestInput._extract_message`` and relies on Sanic 21.12's
``request.json`` and blueprint middleware: checked when Rasa imports the channel
(``check_targets``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from email_validator import EmailNotValidError, validate_email
from rasa.core.channels.channel import UserMessage
from rasa.core.channels.rest import RestInput as RasaRestInput
from sanic import Blueprint, response
from sanic.exceptions import InvalidUsage
from sanic.request import Request

from faqbot.core import delivery, shared_secrets
from faqbot.core.rate_limit import RateLimiter, too_many_message
from faqbot.core.text import clean_text
from faqbot.server import failures, patches
from faqbot.server.failures import ServiceUnavailable
from faqbot.server.patches import require_attribute, require_version

PATCH = "faqbot.server.channels.rest.RestInput (input validation)"


def check_targets() -> None:
    require_version("rasa", patches.RASA_VERSION, PATCH)
    require_version("sanic", patches.SANIC_VERSION, PATCH)
    require_attribute(RasaRestInput, "_extract_message", PATCH)
    require_attribute(RasaRestInput, "get_metadata", PATCH)


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


NO_REPLY = (
    "Entschuldigung, ich kann Ihre Nachricht gerade nicht beantworten, weil ein technisches Problem "
    "aufgetreten ist. Bitte versuchen Sie es in einigen Minuten noch einmal oder wenden Sie sich "
    "an unseren Kundenservice."
)
TOKEN_PREFIX = "FAQBOT_REST_TOKEN_"
MAX_CUSTOMER_ID_CHARS = 128
MAX_EMAIL_CHARS = 254


def _bad_request(code: str, message: str, status: int = 400) -> response.HTTPResponse:
    return response.json({"error": code, "message": f"{message} {EXPECTED}"}, status=status)


def _refused(code: str, message: str, status: int, retry_after: int | None = None) -> response.HTTPResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return response.json({"error": code, "message": message}, status=status, headers=headers)


def too_many_requests(seconds: int) -> response.HTTPResponse:
    """The 429 of every rate limit on the Rasa server (REST, support API)."""
    return _refused("too_many_requests", too_many_message(seconds), 429, retry_after=seconds)


def service_unavailable() -> response.HTTPResponse:
    """The 503 of a turn that was not stored: send the message again."""
    return _refused("service_unavailable", failures.MESSAGE, 503, retry_after=failures.RETRY_AFTER_S)


# The webhook request being handled: Rasa's handler calls ours with the message only, and
# answers 200 with whatever was sent. Set by the request middleware, in the same task.
_current_request: ContextVar[Request | None] = ContextVar("faqbot_rest_request", default=None)


def integration_tokens() -> dict[str, str]:
    """Token -> integration name, from FAQBOT_REST_TOKEN_<NAME>; a short token stops the start."""
    tokens = {}
    for variable in sorted(os.environ):
        if variable.startswith(TOKEN_PREFIX) and variable != TOKEN_PREFIX:
            tokens[shared_secrets.require(variable)] = variable[len(TOKEN_PREFIX) :].lower()
    return tokens


CALLBACK_PREFIX = "FAQBOT_REST_CALLBACK_URL_"


class CallbackMisconfigured(SystemExit):
    """A callback URL that cannot work: the Rasa server does not start."""


def callback_urls() -> dict[str, str]:
    """Integration name -> its callback URL, from FAQBOT_REST_CALLBACK_URL_<NAME>: where the
    support team's replies and closures are posted for the integration's customers. A URL
    that is not http(s) or without the integration's token stops the start."""
    urls = {}
    for variable in sorted(os.environ):
        if not variable.startswith(CALLBACK_PREFIX) or not os.environ[variable].strip():
            continue
        name = variable[len(CALLBACK_PREFIX) :]
        url = os.environ[variable].strip()
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise CallbackMisconfigured(f"{variable} ist keine http(s)-URL: {url!r}.")
        if not os.environ.get(TOKEN_PREFIX + name):
            raise CallbackMisconfigured(
                f"{variable} ist gesetzt, aber {TOKEN_PREFIX + name} nicht: Rückrufe werden mit dem Token der "
                "Integration signiert."
            )
        urls[name.lower()] = url
    return urls


def signed_callback(integration: str | None, body: dict[str, Any]) -> dict[str, str] | None:
    """The outbox row of a callback to ``integration`` (``faqbot.core.delivery.send_callback``):
    its URL, the JSON body and its signature (HMAC-SHA256 with the integration's token, as
    the webhook's); None when the integration has no callback URL."""
    url = callback_urls().get(integration or "")
    if url is None:
        return None
    text = json.dumps(body, ensure_ascii=False)
    token = os.environ[TOKEN_PREFIX + integration.upper()]
    return {"url": url, "body": text, "signature": delivery.signature(text.encode("utf-8"), token)}


REQUEST_ID = re.compile(r"[0-9A-Za-z-]{16,64}")  # nginx's $request_id: 32 hex digits


def client_address(request: Request) -> str:
    """The caller's address; behind a proxy Sanic takes it from the forwarding headers only
    when configured to trust them (FORWARDED_SECRET, REAL_IP_HEADER, PROXIES_COUNT)."""
    return request.remote_addr or request.ip or "?"


def customer_problem(customer: Any) -> str | None:
    """Why ``metadata.customer`` cannot be used as the ticket's contact, or None."""
    if not isinstance(customer, dict):
        return "„metadata.customer“ muss ein JSON-Objekt sein."
    unknown = sorted(set(customer) - {"id", "email"})
    if unknown:
        return f"„metadata.customer“ kennt nur „id“ und „email“, nicht: {', '.join(unknown)}."
    customer_id = customer.get("id")
    if customer_id is not None and (
        not isinstance(customer_id, str | int)
        or not str(customer_id).strip()
        or len(str(customer_id)) > MAX_CUSTOMER_ID_CHARS
        or not str(customer_id).isprintable()
    ):
        return f"„metadata.customer.id“ muss ein Text mit 1 bis {MAX_CUSTOMER_ID_CHARS} druckbaren Zeichen sein."
    email = customer.get("email")
    if email is not None:
        if not isinstance(email, str) or len(email) > MAX_EMAIL_CHARS or not email.isprintable():
            return "„metadata.customer.email“ ist keine gültige E-Mail-Adresse."
        try:
            validate_email(email, check_deliverability=False)
        except EmailNotValidError:
            return "„metadata.customer.email“ ist keine gültige E-Mail-Adresse."
    return None


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


# The public ways of OutputChannel to send a bot message (Rasa's processor uses send_response).
SENDING_METHODS = (
    "send_response",
    "send_text_message",
    "send_image_url",
    "send_attachment",
    "send_text_with_buttons",
    "send_quick_replies",
    "send_elements",
    "send_custom_json",
)


async def process_or_apologise(
    on_new_message: Callable[[UserMessage], Awaitable[Any]], message: UserMessage
) -> ServiceUnavailable | None:
    """Process a message; the customer gets an answer even if that fails (error logged).

    Rasa catches a failing custom action or an unreachable action server itself, logs it and
    sends nothing more: a turn without any bot message is answered with an apology. Sending
    is counted for this one message on the output channel's public sending methods.

    A turn that was not stored (ServiceUnavailable, TurnConflict) gets failures.MESSAGE ("try
    again in a few seconds") and is returned, for the REST channel's 503."""
    output = message.output_channel
    originals = {name: getattr(output, name) for name in SENDING_METHODS if hasattr(output, name)}
    sent = 0

    def counting(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def send(*args: Any, **kwargs: Any) -> Any:
            nonlocal sent
            sent += 1
            return await method(*args, **kwargs)

        return send

    for name, method in originals.items():
        setattr(output, name, counting(method))
    unavailable = None
    try:
        await on_new_message(message)
    except ServiceUnavailable as error:
        # Our own message, never the customer's text; what was sent is not stored.
        logger.warning("Nachricht von %s nicht gespeichert, bitte erneut senden: %s", message.sender_id, error)
        unavailable, sent, apology = error, 0, failures.MESSAGE
    except Exception:
        logger.exception("Message from %s could not be processed", message.sender_id)
        sent, apology = 0, PROCESSING_ERROR
    else:
        apology = NO_REPLY
    finally:
        for name in originals:
            delattr(output, name)  # the class's methods again
    if not sent:
        if apology is NO_REPLY:
            logger.error("Keine Antwort für %s (Aktion fehlgeschlagen?): Entschuldigung gesendet", message.sender_id)
        await output.send_text_message(message.sender_id, apology)
    return unavailable


async def answered_again(request: Request, message: UserMessage) -> bool:
    """A request with an ``X-Request-ID`` (nginx sets one per request, the same when it sends
    the request to another instance because the first died while answering) becomes the
    customer message's id. If the conversation's latest stored message has that id, its turn
    was stored before the instance died: the stored answer is sent instead of processing
    the message a second time. Returns whether it was."""
    request_id = request.headers.get("x-request-id", "")
    if not REQUEST_ID.fullmatch(request_id):
        return False
    message.message_id = request_id
    store = getattr(getattr(request.app.ctx, "agent", None), "tracker_store", None)
    store = getattr(store, "_tracker_store", store)  # inside Rasa's FailSafeTrackerStore
    if not hasattr(store, "answered"):
        return False
    replies = await store.answered(message.sender_id, request_id)
    if replies is None:
        return False
    logger.info("Anfrage %s für %s war schon beantwortet: gespeicherte Antwort gesendet", request_id, message.sender_id)
    for reply in replies:
        await message.output_channel.send_response(message.sender_id, reply)
    return True


class RestInput(RasaRestInput):
    @classmethod
    def name(cls) -> str:
        return "rest"

    def _extract_message(self, req: Request) -> str | None:
        return clean_text(super()._extract_message(req))

    def get_metadata(self, request: Request) -> dict[str, Any] | None:
        # The integration as its token says, never as the caller writes: the support team's
        # replies go back through that integration's callback URL.
        metadata = dict(super().get_metadata(request) or {})
        metadata.pop("integration", None)
        integration = getattr(request.ctx, "integration", None)
        return {**metadata, "integration": integration} if integration else metadata or None

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        async def handle(message: UserMessage) -> None:
            request = _current_request.get()
            try:
                if request is not None and await answered_again(request, message):
                    return
            except ServiceUnavailable as error:
                logger.warning("Nachricht von %s nicht verarbeitet, bitte erneut senden: %s", message.sender_id, error)
                await message.output_channel.send_text_message(message.sender_id, failures.MESSAGE)
                request.ctx.not_stored = True
                return
            if await process_or_apologise(on_new_message, message) is not None:
                if request is not None:
                    request.ctx.not_stored = True

        webhook = super().blueprint(handle)
        tokens = integration_tokens()
        callback_urls()  # a wrong callback URL stops the start
        if not tokens:
            logger.warning(
                "REST-Kanal: keine Integration konfiguriert (FAQBOT_REST_TOKEN_<NAME>), jede Anfrage wird abgewiesen."
            )
        per_conversation = RateLimiter.from_environment("CONVERSATION")
        per_conversation_day = RateLimiter.from_environment("CONVERSATION_DAY")
        per_client = RateLimiter.from_environment("CLIENT")
        per_integration = RateLimiter.from_environment("INTEGRATION")
        failed_logins = RateLimiter.from_environment("FAILED_AUTH")

        @webhook.middleware("request")
        async def validate(request: Request) -> response.HTTPResponse | None:
            _current_request.set(request)
            if request.method != "POST":
                return None
            if len(request.body or b"") > MAX_BODY_BYTES:
                return request_problem(request)
            address = client_address(request)
            # After too many wrong tokens an address waits before any token is even compared.
            wait = failed_logins.waiting(address)
            if wait:
                return too_many_requests(wait)
            given = shared_secrets.bearer_token(request.headers.get("authorization"))
            integration = next((name for key, name in tokens.items() if shared_secrets.matches(given, key)), None)
            if integration is None:
                # An integration's own address is not limited (many customers share it); callers
                # without a valid token are.
                wait = per_client.allow(address)
                if wait:
                    return too_many_requests(wait)
                if given is None:
                    return _refused(
                        "unauthorized",
                        "Der REST-Kanal ist nur für angemeldete Integrationen: "
                        "bitte senden Sie „Authorization: Bearer <Token>“.",
                        401,
                    )
                logger.warning("REST-Kanal: ungültiger Token von %s abgewiesen", address)  # never the token
                failed_logins.allow(address)
                return _refused("unauthorized", "Der angegebene Token ist ungültig.", 401)
            wait = per_integration.allow(integration)
            if wait:
                return too_many_requests(wait)
            request.ctx.integration = integration
            problem = request_problem(request)
            if problem is not None:
                return problem
            body = request.json
            customer = (body.get("metadata") or {}).get("customer")
            if customer is not None:
                reason = customer_problem(customer)
                if reason:
                    return _bad_request("invalid_customer", reason)
            wait = per_conversation.allow(body["sender"]) or per_conversation_day.allow(body["sender"])
            if wait:
                return too_many_requests(wait)
            return None

        @webhook.middleware("response")
        async def not_stored(request: Request, _: response.HTTPResponse) -> response.HTTPResponse | None:
            # Rasa's handler answered 200 with the German message: the caller is to send again.
            return service_unavailable() if getattr(request.ctx, "not_stored", False) else None

        return webhook
