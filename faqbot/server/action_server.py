"""The action server: rasa-sdk's own, with the ticket delivery worker.

    python -m faqbot.server.action_server [any option of `rasa run actions`]
    rasa run actions                      # the same, for plain Rasa users

The actions (``actions/``) write each ticket and its outbox rows to the ticket store;
the delivery worker (``faqbot.core.delivery``) sends them to the configured webhook and
mailbox. It runs in the action server's process, started and stopped with its web server
through rasa-sdk's plugin hook ``attach_sanic_app_extensions``: rasa-sdk looks for a
package named ``rasa_sdk_plugins`` (this project's registers this module), so plain
``rasa run actions`` and ``python -m rasa_sdk`` deliver tickets too. With several Sanic
workers (``ACTION_SERVER_SANIC_WORKERS``) each runs a worker; they claim each outbox row
before sending it, so nothing is sent twice.

The action server is internal: it listens on 127.0.0.1 unless ``SANIC_HOST`` says otherwise
(rasa-sdk's own default is every interface) and answers only requests carrying
``FAQBOT_ACTION_TOKEN`` (``Authorization: Bearer ...`` as endpoints.yml sends it, or Rasa's
``?token=``); ``/health`` stays open for load balancers. Without the token anyone reaching
the port could create tickets with forged transcripts or append to open ones.

``/health/live`` and ``/health/ready`` (the ticket database answers within 1 s) are open too;
``/metrics`` wants ``FAQBOT_METRICS_TOKEN`` or ``FAQBOT_ACTION_TOKEN`` (``faqbot.server.health``).
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timezone
from typing import Any

import pluggy
import rasa_sdk.plugin

from faqbot.core import shared_secrets
from faqbot.core.delivery import DeliveryWorker, load_config
from faqbot.core.support_config import read_support_config
from faqbot.core.support_hours import SupportAvailability
from faqbot.core.tickets import TicketStore, database_url
from faqbot.server import health
from faqbot.server.patches import RASA_SDK_VERSION, PatchTargetError, require_attribute, require_version

logger = logging.getLogger("faqbot.server.action_server")  # also when run as __main__

hookimpl = pluggy.HookimplMarker("rasa_sdk")


def check_plugin_hook() -> None:
    """rasa-sdk must still offer the hook, and find this project's plugin."""
    patch = "faqbot.server.action_server (delivery worker)"
    require_version("rasa-sdk", RASA_SDK_VERSION, patch)
    require_attribute(rasa_sdk.plugin, "attach_sanic_app_extensions", patch)
    # By name: run as `python -m`, this module is __main__, the registered one its import.
    registered = rasa_sdk.plugin.plugin_manager().get_plugins()
    if not any(getattr(plugin, "__name__", "") == "faqbot.server.action_server" for plugin in registered):
        raise PatchTargetError(
            f"{patch}: rasa-sdk did not load the plugin from rasa_sdk_plugins/; "
            "is the project installed (`make install`)?"
        )


async def start_delivery(app: Any, loop: Any) -> None:
    config = load_config()
    app.ctx.delivery_worker = DeliveryWorker(TicketStore(), config).start()
    logger.info("Zustellung der Tickets gestartet: %s", ", ".join(config.targets) or "keine Ziele konfiguriert")


async def stop_delivery(app: Any, loop: Any) -> None:
    worker = getattr(app.ctx, "delivery_worker", None)
    if worker is not None:
        worker.stop()


def check_support_config() -> None:
    """support.yml is read again on every escalation; a mistake in it must stop the start,
    not surface when the first customer asks for a person."""
    try:
        load_config()
        SupportAvailability.from_config(read_support_config(), datetime.now(timezone.utc))
    except Exception as error:  # YAML syntax, unknown state, bad time span, ...
        raise SystemExit(f"Die Support-Einstellungen (support.yml) sind fehlerhaft: {error}") from error


UNAUTHORIZED = "Zugriff verweigert: Der Action-Server antwortet nur dem Rasa-Server (FAQBOT_ACTION_TOKEN)."


def require_token(app: Any) -> None:
    token = shared_secrets.require("FAQBOT_ACTION_TOKEN")

    @app.middleware("request")
    async def authenticate(request: Any) -> Any:
        if request.path == "/health" or request.path in health.OPEN_PATHS:
            return None
        given = shared_secrets.bearer_token(request.headers.get("authorization")) or request.args.get("token")
        if shared_secrets.matches(given, token):
            return None
        # Never the token itself; the address shows who tries.
        logger.warning("Action-Server: Anfrage ohne gültigen Token von %s auf %s abgewiesen", request.ip, request.path)
        from sanic import response

        return response.json({"error": "unauthorized", "message": UNAUTHORIZED}, status=401)


@hookimpl
def attach_sanic_app_extensions(app: Any) -> None:
    """rasa-sdk calls this with its Sanic app before it serves (and before it reads SANIC_HOST)."""
    os.environ.setdefault("SANIC_HOST", "127.0.0.1")
    check_support_config()
    app.register_middleware(health.start_timer, "request")  # before the token check, so refusals are timed too
    require_token(app)
    probe = health.database_probe(database_url())
    ticket_database = health.Check("ticket_store", "Die Ticket-Datenbank antwortet nicht.", probe)
    tokens = [shared_secrets.require("FAQBOT_METRICS_TOKEN"), shared_secrets.require("FAQBOT_ACTION_TOKEN")]
    health.add_endpoints(app, "actions", lambda app: [ticket_database], tokens)
    app.register_listener(start_delivery, "before_server_start")
    app.register_listener(stop_delivery, "after_server_stop")


def main() -> None:
    from rasa_sdk.__main__ import main as rasa_sdk_main

    check_plugin_hook()
    args = sys.argv[1:]
    if "--actions" not in args:
        args = ["--actions", "actions", *args]
    sys.argv = ["rasa_sdk", *args]
    rasa_sdk_main()


if __name__ == "__main__":
    main()
