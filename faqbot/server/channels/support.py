"""The support team's REST API on the Rasa server: list, read, answer and close tickets.

    GET  /webhooks/support/tickets             open tickets
    GET  /webhooks/support/tickets/<id>        one ticket with transcript and deliveries
    POST /webhooks/support/tickets/<id>/close  close it, optionally with {"resolution": "..."}
                                               for the customer; the customer is told in the
                                               chat (and by mail), the conversation goes back
                                               to the bot (back_to_bot); receivers get ``closed``
    POST /webhooks/support/tickets/<id>/reply  {"text": "..."}: an agent's reply, into the
                                               customer's chat (pushed to the widget; in the
                                               response for REST), by mail if not connected
    POST /webhooks/support/privacy/export      everything stored about one customer (GDPR Art. 15/20)
    POST /webhooks/support/privacy/erase       erase it (Art. 17), logged without the content
         body of both: {"conversation_id" | "customer_id" | "email": "..."}

The Rasa server also deletes what is older than its retention period, every few hours
(``faqbot.core.privacy``, README "Datenschutz").

Every request needs ``Authorization: Bearer <FAQBOT_SUPPORT_TOKEN>`` (at least 32 characters).
Without a configured token the API refuses everything (503), so it is never open by accident.
A wrong token is logged with the caller's address (never the token); after 10 wrong tokens
from one address per minute it waits (429) before any token is compared again, and each
address may send 120 requests per minute (``faqbot.core.rate_limit``).

Closing a ticket reaches into the running Rasa server as Rasa's own HTTP API does (its
agent, lock store, processor and input channels, ``_end_handoff``): the methods are
checked when Rasa imports the channel (``check_targets``), what Rasa sets on the app and
the agent once the server has started (``check_server``); a failed check stops the server.

Several instances: a Rasa server whose conversations are in a shared database (its tracker
store is not SQLite) must have the tickets (``FAQBOT_TICKET_DB_URL``) and the review queue
(``event_broker: url``, ``FAQBOT_REVIEW_DB_URL``) in a shared database too, else it does
not start (``check_shared_stores``): the API must never answer from a file of this host.
The ticket store is opened at the start as well, so a wrong URL stops the start too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rasa.core.agent import Agent
from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, OutputChannel, UserMessage
from rasa.core.lock_store import LockStore
from rasa.core.processor import MessageProcessor
from rasa.shared.core.events import BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from sanic import Blueprint, Sanic, response
from sanic.request import Request
from socketio.base_manager import BaseManager

from faqbot.core import privacy, review_store, shared_secrets, tickets
from faqbot.core.delivery import load_config
from faqbot.core.paths import PROJECT_DIR
from faqbot.core.rate_limit import RateLimiter
from faqbot.core.text import clean_text
from faqbot.core.tickets import CUSTOMER_MAIL, TicketStore
from faqbot.server import patches
from faqbot.server.channels.rest import service_unavailable, signed_callback, too_many_requests
from faqbot.server.failures import ServiceUnavailable
from faqbot.server.patches import require_attribute, require_version
from faqbot.server.web import STAFF_PAGE_HEADERS

logger = logging.getLogger(__name__)

PATCH = "faqbot.server.channels.support (closing a ticket ends the handoff, agents' replies in the chat)"


def check_targets() -> None:
    require_version("rasa", patches.RASA_VERSION, PATCH)
    require_attribute(Agent, "trigger_intent", PATCH)
    require_attribute(LockStore, "lock", PATCH)
    require_attribute(MessageProcessor, "fetch_tracker_and_update_session", PATCH)
    require_attribute(BaseManager, "get_participants", PATCH)  # is the customer's widget connected?


check_targets()  # when Rasa loads the channel (credentials.yml), before it serves


def check_server(app: Sanic) -> None:
    """What _end_handoff and the privacy endpoints read from the running server: set by Rasa
    while it starts."""
    agent = require_attribute(app.ctx, "agent", PATCH, where="app.ctx")
    require_attribute(agent, "lock_store", PATCH, where="app.ctx.agent")
    require_attribute(agent, "processor", PATCH, where="app.ctx.agent")
    require_attribute(agent, "tracker_store", PATCH, where="app.ctx.agent")
    require_attribute(app.ctx, "input_channels", PATCH, where="app.ctx")


def conversation_store(app: Sanic) -> Any:
    """The project's SQL tracker store behind Rasa's fail-safe wrapper, or None."""
    store = app.ctx.agent.tracker_store
    store = getattr(store, "_tracker_store", store)  # rasa.core.tracker_store.FailSafeTrackerStore
    return store if hasattr(store, "engine") else None


def review_location(store: Any) -> str | Path:
    """Where the review queue of this server is: its event broker's, else the default."""
    writer = getattr(getattr(store, "event_broker", None), "writer", None)  # review_broker.ReviewQueueBroker
    return writer.location if writer is not None else review_store.location()


def check_shared_stores(app: Sanic) -> None:
    """The rule for several instances (README, "Mehrere Instanzen"): conversations in a
    shared database (not SQLite) mean that tickets and the review queue must be shared
    too, never a file of this host that the other instances do not see. Stops the start."""
    store = conversation_store(app)
    if store is None or store.engine.dialect.name == "sqlite":
        return
    tickets_url = os.environ.get(tickets.URL_VARIABLE, "").strip()
    if not tickets_url or tickets_url.startswith("sqlite"):
        raise SharedStoreMissing(
            "Die Gespräche liegen in einer gemeinsamen Datenbank, die Tickets aber nicht: Bitte setzen Sie "
            f"{tickets.URL_VARIABLE} (z. B. postgresql://…) auf diesem Rasa-Server wie auf den Action-Servern."
        )
    if not review_store.is_shared(review_location(store)):
        raise SharedStoreMissing(
            "Die Gespräche liegen in einer gemeinsamen Datenbank, die Review-Warteschlange aber nicht: Bitte "
            f"setzen Sie {review_store.URL_VARIABLE} (event_broker: url in endpoints.production.yml)."
        )


class SharedStoreMissing(RuntimeError):
    """A store several instances must share is a file of this host: the server does not start."""


PRIVACY_LOOKUPS = ", ".join(f"„{lookup}“" for lookup in privacy.LOOKUPS)


def privacy_lookup(request: Request) -> tuple[str, str] | response.HTTPResponse:
    """The one lookup of a privacy request, or a German 400."""
    try:
        body = request.json
    except Exception:
        body = None
    given = {key: value for key, value in body.items() if key in privacy.LOOKUPS} if isinstance(body, dict) else {}
    if len(given) != 1 or not isinstance(next(iter(given.values())), str) or not next(iter(given.values())).strip():
        return response.json(
            {
                "error": "invalid_lookup",
                "message": f"Erwartet wird JSON mit genau einem nicht leeren Feld: {PRIVACY_LOOKUPS}.",
            },
            status=400,
        )
    return next(iter(given.items()))


MAX_RESOLUTION_CHARS = 4000

# The support team's ticket page (web/agent/): read once at start, served without a token
# (it holds no data; its requests to the API carry the token the agent types).
AGENT_PAGE_PATH = "/webhooks/support/agent"
AGENT_PAGE_FILES = {
    path.name: (content_type, path.read_bytes())
    for path, content_type in (
        (PROJECT_DIR / "web" / "agent" / "index.html", "text/html; charset=utf-8"),
        (PROJECT_DIR / "web" / "agent" / "agent.js", "text/javascript; charset=utf-8"),
        (PROJECT_DIR / "web" / "agent" / "agent.css", "text/css; charset=utf-8"),
        (PROJECT_DIR / "web" / "staff" / "staff.js", "text/javascript; charset=utf-8"),  # shared with the inbox
        (PROJECT_DIR / "web" / "staff" / "staff.css", "text/css; charset=utf-8"),
    )
}


def agent_file(name: str) -> response.HTTPResponse:
    found = AGENT_PAGE_FILES.get(name)
    if found is None:
        return response.text("Diese Seite gibt es nicht.", status=404)
    content_type, body = found
    return response.raw(body, content_type=content_type)


MAX_KEY_CHARS = 200


def reply_body(request: Request) -> tuple[str, str | None] | response.HTTPResponse:
    """The ``text`` of an agent's reply (JSON body), cleaned, and its optional ``key`` (the
    same key twice is one reply); a German 400 if there is no text."""
    try:
        body = request.json
    except Exception:
        body = None
    text = body.get("text") if isinstance(body, dict) else None
    text = clean_text(text).strip() if isinstance(text, str) else ""
    key = body.get("key") if isinstance(body, dict) else None
    if not text or len(text) > MAX_RESOLUTION_CHARS or not (key is None or isinstance(key, str)):
        example = '{"text": "Ihre Antwort an den Kunden"}'
        message = f"Bitte senden Sie JSON wie {example} (1 bis {MAX_RESOLUTION_CHARS} Zeichen)."
        return response.json({"error": "invalid_body", "message": message}, status=400)
    return text, clean_text(key).strip()[:MAX_KEY_CHARS] or None if key else None


def resolution_text(request: Request) -> str | None | response.HTTPResponse:
    """The optional ``resolution`` of a close request (JSON body), cleaned; a German 400 if it is not text."""
    if not request.body:
        return None
    try:
        body = request.json
    except Exception:
        body = None
    resolution = body.get("resolution") if isinstance(body, dict) else None
    if not isinstance(body, dict) or (resolution is not None and not isinstance(resolution, str)):
        message = 'Bitte senden Sie JSON wie {"resolution": "Text für den Kunden"} oder nichts.'
        return response.json({"error": "invalid_body", "message": message}, status=400)
    resolution = clean_text(resolution or "").strip()
    if len(resolution) > MAX_RESOLUTION_CHARS:
        message = f"Der Lösungstext ist zu lang (höchstens {MAX_RESOLUTION_CHARS} Zeichen)."
        return response.json({"error": "resolution_too_long", "message": message}, status=400)
    return resolution or None


def _ticket_json(ticket, store: TicketStore, full: bool = False, delivery: str | None = None) -> dict[str, Any]:
    data = dataclasses.asdict(ticket)
    data.pop("is_new")
    if not full:
        data.pop("transcript")
        data["delivery"] = delivery  # "delivered", "pending", "failed", or None (no target)
        return data
    data["deliveries"] = [
        {key: value for key, value in dataclasses.asdict(delivery).items() if key != "payload"}
        for delivery in store.deliveries_for(ticket.ticket_id)
    ]
    return data


def rest_integration(tracker: DialogueStateTracker) -> str | None:
    """The REST integration of the conversation (the REST channel notes it from the token in
    each message's metadata), if the customer's latest message came over REST."""
    for event in reversed(tracker.events):
        if isinstance(event, UserUttered) and event.input_channel in ("rest", "socketio"):
            return (event.metadata or {}).get("integration") if event.input_channel == "rest" else None
    return None


async def _end_handoff(
    request: Request, sender_id: str, ticket_id: str
) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Tell the customer that the ticket is closed, with the support team's resolution
    (through the channel they last used), and end the handoff if it still runs, by
    triggering ``back_to_bot`` as Rasa's own trigger_intent endpoint would. Returns the
    bot's messages for channels that cannot push (REST; None if the conversation is gone)
    and the REST integration to call back."""
    agent = request.app.ctx.agent
    async with agent.lock_store.lock(sender_id):
        tracker = await agent.processor.fetch_tracker_and_update_session(sender_id)
        if not tracker.events:  # erased or expired: nobody to tell in the chat
            return None, None
        integration = rest_integration(tracker)
        latest_channel = tracker.get_latest_input_channel()
        output: OutputChannel = CollectingOutputChannel()
        for channel in request.app.ctx.input_channels:
            if channel.name() == latest_channel and channel.get_output_channel():
                output = channel.get_output_channel()  # socket.io: pushed to the widget
        await agent.trigger_intent("back_to_bot", [], output, tracker)
    return (output.messages if isinstance(output, CollectingOutputChannel) else []), integration


async def _tell_in_chat(
    request: Request, sender_id: str, ticket_id: str, text: str
) -> tuple[bool, list[dict], str | None]:
    """An agent's reply into the customer's conversation, as a bot message of its own
    (``utter_agent_reply``; stored in the conversation, the dialogue goes on as it was),
    pushed to the widget. (Whether a widget of the conversation is connected to this
    instance, the messages for channels that cannot push: REST, and its integration.)"""
    agent = request.app.ctx.agent
    async with agent.lock_store.lock(sender_id):
        tracker = await agent.processor.fetch_tracker_and_update_session(sender_id)
        if not tracker.events:  # erased or expired
            return False, [], None
        channel = next(
            (c for c in request.app.ctx.input_channels if c.name() == tracker.get_latest_input_channel()), None
        )
        output = channel.get_output_channel() if channel else None
        message = await agent.processor.nlg.generate(
            "utter_agent_reply", tracker, output.name() if output else "rest", ticket_id=ticket_id, text=text
        )
        tracker.update(BotUttered(message["text"], {"custom": {"support_reply": {"ticket_id": ticket_id}}}))
        await agent.tracker_store.save(tracker)
    if output is None or isinstance(output, CollectingOutputChannel):
        return False, [{"recipient_id": sender_id, "text": message["text"]}], rest_integration(tracker)
    sio = getattr(channel, "sio", None)
    connected = bool(sio and any(True for _ in sio.manager.get_participants("/", sender_id)))
    await output.send_text_message(sender_id, message["text"])
    return connected, [], None


class SupportInput(InputChannel):
    @classmethod
    def name(cls) -> str:
        return "support"

    def __init__(self) -> None:
        self._store: TicketStore | None = None
        self._token = os.environ.get("FAQBOT_SUPPORT_TOKEN") or None
        if self._token:
            shared_secrets.require("FAQBOT_SUPPORT_TOKEN")  # a short token stops the start
        self._failed_logins = RateLimiter.from_environment("FAILED_AUTH")
        self._requests = RateLimiter.from_environment("SUPPORT")

    def store(self) -> TicketStore:
        if self._store is None:
            self._store = TicketStore()
        return self._store

    def call_back(
        self, ticket_id: str, key: str, event: str, integration: str | None, messages: list[dict[str, Any]]
    ) -> bool:
        """Queue the bot's messages for a REST customer to their integration's callback URL
        (signed, through the outbox); False if the integration has none."""
        if not messages:
            return False
        body = {
            "event": event,
            "ticket_id": ticket_id,
            "recipient_id": messages[0]["recipient_id"],
            "created": datetime.now(timezone.utc).isoformat(),
            "messages": messages,
        }
        callback = signed_callback(integration, body)
        if callback is None:
            return False
        self.store().queue_callback(ticket_id, key, callback)
        return True

    def data_stores(self, app: Sanic) -> privacy.DataStores | None:
        store = conversation_store(app)
        if store is None:
            return None
        # An engine of its own: the privacy work runs in a worker thread, and the tracker
        # store's pooled SQLite connections belong to the event loop's thread.
        engine = sa.create_engine(store.engine.url, poolclass=sa.pool.NullPool)
        return privacy.DataStores(engine, self.store(), review_location(store))

    async def purge_regularly(self, app: Sanic, days: dict[str, int]) -> None:
        """Delete what is older than its retention period, now and every few hours."""
        while True:
            stores = self.data_stores(app)
            if stores is None:
                logger.error("Aufbewahrungsfristen: kein SQL-Gesprächsspeicher, es wird nichts gelöscht")
                return
            try:
                counts = await asyncio.to_thread(privacy.purge_expired, stores, days)
                logger.info("Aufbewahrungsfristen angewandt: %s", counts)
            except Exception:  # a locked or unreachable store: try again next time
                logger.exception("Aufbewahrungsfristen: Löschen fehlgeschlagen")
            await asyncio.sleep(privacy.PURGE_INTERVAL_S)

    def _refusal(self, request: Request) -> response.HTTPResponse | None:
        if not self._token:
            return response.json(
                {
                    "error": "not_configured",
                    "message": "FAQBOT_SUPPORT_TOKEN ist nicht gesetzt: Die Support-API ist abgeschaltet.",
                },
                status=503,
            )
        address = request.remote_addr or request.ip or "?"
        wait = self._failed_logins.waiting(address) or self._requests.allow(address)
        if wait:
            return too_many_requests(wait)
        given = shared_secrets.bearer_token(request.headers.get("Authorization"))
        if not shared_secrets.matches(given, self._token):
            logger.warning("Support-API: ungültiger Token von %s auf %s abgewiesen", address, request.path)
            self._failed_logins.allow(address)
            return response.json(
                {"error": "unauthorized", "message": "Der Bearer-Token fehlt oder ist falsch."},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        api = Blueprint("support_api", __name__)

        retention = privacy.retention_days()  # a mistake in support.yml's retention section stops the start

        @api.listener("after_server_start")  # Rasa loads the agent before the server starts
        async def check(app: Sanic, loop: Any) -> None:
            check_server(app)
            check_shared_stores(app)
            await asyncio.to_thread(self.store)  # a database that cannot be opened stops the start
            app.ctx.privacy_purge = asyncio.create_task(self.purge_regularly(app, retention))

        @api.listener("before_server_stop")
        async def stop_purging(app: Sanic, loop: Any) -> None:
            task = getattr(app.ctx, "privacy_purge", None)
            if task is not None:
                task.cancel()

        @api.middleware("request")
        async def authenticate(request: Request) -> response.HTTPResponse | None:
            if request.path.startswith(AGENT_PAGE_PATH):  # the page holds no data: its requests need the token
                return None
            return self._refusal(request)

        @api.middleware("response")
        async def page_headers(request: Request, reply: response.HTTPResponse) -> None:
            if request.path.startswith(AGENT_PAGE_PATH):
                reply.headers.update(STAFF_PAGE_HEADERS)

        @api.route("/agent", methods=["GET"], strict_slashes=True)
        async def agent_page_redirect(request: Request) -> response.HTTPResponse:
            return response.redirect(f"{AGENT_PAGE_PATH}/")  # the page's links are relative to it

        @api.route("/agent/", methods=["GET"], strict_slashes=True)
        async def agent_page(request: Request) -> response.HTTPResponse:
            return agent_file("index.html")

        @api.route("/agent/<name>", methods=["GET"])
        async def agent_page_file(request: Request, name: str) -> response.HTTPResponse:
            return agent_file(name)

        @api.exception(ServiceUnavailable)
        async def unavailable(request: Request, error: ServiceUnavailable) -> response.HTTPResponse:
            # A conversation's lock or store is down (closing a ticket, privacy requests): try again.
            logger.warning("Support-API: %s nicht möglich: %s", request.path, error)
            return service_unavailable()

        @api.route("/tickets", methods=["GET"])
        async def list_tickets(request: Request) -> response.HTTPResponse:
            store = self.store()
            tickets = store.open_tickets()
            states = store.delivery_states(ticket.ticket_id for ticket in tickets)
            return response.json(
                {"tickets": [_ticket_json(t, store, delivery=states.get(t.ticket_id)) for t in tickets]}
            )

        @api.route("/tickets/<ticket_id>", methods=["GET"])
        async def get_ticket(request: Request, ticket_id: str) -> response.HTTPResponse:
            ticket = self.store().get(ticket_id)
            if not ticket:
                return response.json({"error": "not_found", "message": "Dieses Ticket gibt es nicht."}, status=404)
            return response.json(_ticket_json(ticket, self.store(), full=True))

        @api.route("/tickets/<ticket_id>/close", methods=["POST"])
        async def close_ticket(request: Request, ticket_id: str) -> response.HTTPResponse:
            resolution = resolution_text(request)
            if isinstance(resolution, response.HTTPResponse):
                return resolution
            config = load_config()
            targets = config.targets + ([CUSTOMER_MAIL] if config.mails_customers else [])
            ticket = self.store().close(ticket_id, resolution, targets)
            if ticket is None:
                return response.json(
                    {
                        "error": "not_found_or_closed",
                        "message": "Dieses Ticket gibt es nicht oder es ist schon geschlossen.",
                    },
                    status=404,
                )
            try:
                messages, integration = await _end_handoff(request, ticket.sender_id, ticket_id)
            except Exception:  # closed all the same: the customer's next message learns it
                logger.exception("Handoff of %s not ended after closing %s", ticket.sender_id, ticket_id)
                messages, integration = None, None
            called_back = self.call_back(ticket_id, "closed", "closed", integration, messages or [])
            return response.json(
                {
                    "ticket_id": ticket_id,
                    "status": "closed",
                    "customer_notified": messages is not None,
                    "called_back": called_back,
                    "messages": messages or [],
                }
            )

        @api.route("/tickets/<ticket_id>/reply", methods=["POST"])
        async def reply_to_ticket(request: Request, ticket_id: str) -> response.HTTPResponse:
            body = reply_body(request)
            if isinstance(body, response.HTTPResponse):
                return body
            text, key = body
            try:
                ticket, number, added = self.store().add_reply(ticket_id, text, key)
            except LookupError:
                return response.json(
                    {"error": "not_found_or_closed", "message": "Dieses Ticket gibt es nicht oder es ist geschlossen."},
                    status=404,
                )
            if not added:  # sent before (the same key): the customer has it already
                return response.json({"ticket_id": ticket_id, "number": number, "duplicate": True})
            try:
                in_chat, messages, integration = await _tell_in_chat(request, ticket.sender_id, ticket_id, text)
            except Exception:  # stored all the same; the mail below still reaches the customer
                logger.exception("Reply to %s not told in the chat", ticket_id)
                in_chat, messages, integration = False, [], None
            called_back = self.call_back(ticket_id, f"reply-{number}", "reply", integration, messages)
            mailed = False
            if not in_chat and not called_back and load_config().mails_customers:
                mailed = self.store().mail_reply(ticket, number)
            return response.json(
                {
                    "ticket_id": ticket_id,
                    "number": number,
                    "duplicate": False,
                    "in_chat": in_chat,
                    "called_back": called_back,
                    "mailed": mailed,
                    "messages": messages,
                }
            )

        async def privacy_request(
            request: Request,
        ) -> tuple[privacy.DataStores, privacy.Subject] | response.HTTPResponse:
            """The stores and the conversations a privacy request concerns, or a German error."""
            lookup = privacy_lookup(request)
            if isinstance(lookup, response.HTTPResponse):
                return lookup
            stores = self.data_stores(request.app)
            if stores is None:
                return _no_conversation_store()
            return stores, await asyncio.to_thread(privacy.find, stores, *lookup)

        @api.route("/privacy/export", methods=["POST"])
        async def privacy_export(request: Request) -> response.HTTPResponse:
            found = await privacy_request(request)
            if isinstance(found, response.HTTPResponse):
                return found
            return response.json(await asyncio.to_thread(privacy.export, *found))

        @api.route("/privacy/erase", methods=["POST"])
        async def privacy_erase(request: Request) -> response.HTTPResponse:
            found = await privacy_request(request)
            if isinstance(found, response.HTTPResponse):
                return found
            stores, subject = found
            # Each conversation's lock, as for a message (in a fixed order): no turn is saved
            # into a half-erased conversation.
            lock_store = request.app.ctx.agent.lock_store
            async with contextlib.AsyncExitStack() as locks:
                for conversation_id in sorted(subject.conversation_ids):
                    await locks.enter_async_context(lock_store.lock(conversation_id))
                result = await asyncio.to_thread(privacy.erase, stores, subject, "support-api")
            return response.json(result)

        return api


def _no_conversation_store() -> response.HTTPResponse:
    return response.json(
        {
            "error": "no_conversation_store",
            "message": "Der Rasa-Server hat keinen SQL-Gesprächsspeicher: Auskunft und Löschung sind nicht möglich.",
        },
        status=503,
    )
