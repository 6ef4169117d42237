"""Rasa's own server, ``rasa run ...``, with two speed-ups Rasa has no setting for.

    python -m faqbot.server.rasa_server run [any options of rasa run]

``make run`` (``faqbot.server.serve``) starts the Rasa server and the NLU server this way; plain
``rasa run`` works the same, only without these two:

* Rasa checks every custom-action response with ``jsonschema.validate()``, which first
  checks the (constant) response schema itself: ~3.5 ms of the Rasa server's CPU per action
  call, ~11 % under load (README, "Speed"). Here the response is checked against a
  validator built once, with the same errors.
* The loaded model and libraries are ~600,000 Python objects. Each full garbage
  collection walked all of them: 250-300 ms in which the server answered nobody, the
  worst latencies under load. Once the model is loaded they are frozen (``gc.freeze``):
  kept for the life of the process (as the model is; a model swapped in at run time
  through the HTTP API keeps the old one's objects) and no longer walked.

And one safeguard: with ``--enable-api`` (the NLU server of ``make run``) Rasa's HTTP API
answers only requests that carry ``FAQBOT_NLU_TOKEN`` (as ``?token=``, ``Authorization:
Bearer`` or, as Rasa's ``nlu`` endpoint sends it, in the JSON body of ``/model/parse``).
Rasa's own ``--auth-token`` reads only the query, which its ``nlu`` endpoint does not use,
so without this any local user could ``DELETE /model``. ``/`` (health) and the channels'
``/webhooks/`` (they check their callers themselves) stay open.

Before Rasa starts, every patch of Rasa, Sanic and python-socketio internals in the Rasa
server is checked (``check_patches``): these two, the tracker store and the channels. A
wrong library version or a missing target stops the server with ``PatchTargetError``.
Rasa's version is checked before Rasa is imported, so an upgrade fails fast and clearly.
Plain ``rasa run``: the tracker store and the channels check themselves when Rasa imports
them; Rasa 3.6.21 lets the error through and exits with code 1, but another version might
not (3.6 already replaces a tracker store that fails with ImportError or AttributeError by
its in-memory store), so after an upgrade start the server through this module.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import rasa.shared.constants
from jsonschema import validators
from jsonschema.exceptions import best_match

from faqbot.core import shared_secrets
from faqbot.server import patches
from faqbot.server.patches import require_attribute, require_version

if TYPE_CHECKING:
    from rasa.core.actions.action import RemoteAction

logger = logging.getLogger("faqbot.server.rasa_server")  # also when run as __main__

PATCH = "faqbot.server.rasa_server (action response check, gc.freeze after loading, API token)"


def check_targets() -> None:
    """Rasa's version, before any of Rasa's server is imported, then what install() replaces."""
    require_version("rasa", patches.RASA_VERSION, PATCH)
    import rasa.core.actions.action
    import rasa.core.run
    import rasa.server

    remote_action = require_attribute(rasa.core.actions.action, "RemoteAction", PATCH)
    require_attribute(remote_action, "_validate_action_result", PATCH)
    require_attribute(remote_action, "action_response_format_spec", PATCH)
    require_attribute(rasa.core.run, "load_agent_on_start", PATCH)
    require_attribute(rasa.server, "create_app", PATCH)


def check_patches() -> None:
    """Every patch in the Rasa server, before Rasa starts. The tracker store and the
    channels check themselves when Rasa imports them, but Rasa 3.6 turns a tracker store
    that fails to import into a fallback to its in-memory store, and another Rasa version
    may swallow more: checked here, a failed check always stops the server."""
    check_targets()
    from faqbot.server import tracker_store
    from faqbot.server.channels import rest, socketio, support

    for module in (tracker_store, rest, socketio, support):
        module.check_targets()


@lru_cache(maxsize=1)
def _response_validator() -> Any:
    from rasa.core.actions.action import RemoteAction

    schema = RemoteAction.action_response_format_spec()
    validator_class = validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def _validate_action_result(self: RemoteAction, result: dict[str, Any]) -> bool:
    error = best_match(_response_validator().iter_errors(result))
    if error is None:
        return True
    # Rasa's own message for an invalid action server response.
    error.message += (
        ". Failed to validate Action server response from API, make sure "
        "your response from the Action endpoint is valid. For more information "
        f"about the format visit {rasa.shared.constants.DOCS_BASE_URL}/custom-actions"
    )
    raise error


_rasa_load_agent_on_start: Any = None  # Rasa's function, kept by install()


async def _load_agent_then_freeze(*args: Any, **kwargs: Any) -> Any:
    agent = await _rasa_load_agent_on_start(*args, **kwargs)
    gc.collect()
    gc.freeze()
    logger.info("Modell geladen; %d Objekte vom Garbage Collector ausgenommen.", gc.get_freeze_count())
    return agent


_rasa_create_app: Any = None  # Rasa's function, kept by install()
API_UNAUTHORIZED = "Zugriff verweigert: Die HTTP-API dieses Servers verlangt FAQBOT_NLU_TOKEN."


def api_token_given(request: Any) -> str | None:
    bearer = shared_secrets.bearer_token(request.headers.get("authorization"))
    if bearer is not None:
        return bearer
    if request.args.get("token"):
        return request.args.get("token")
    if request.method == "POST" and request.path == "/model/parse":
        try:
            body = request.json
        except Exception:  # not JSON: no token in it
            return None
        return body.get("token") if isinstance(body, dict) and isinstance(body.get("token"), str) else None
    return None


def _create_app_with_token(*args: Any, **kwargs: Any) -> Any:
    """Rasa's API app, answering only callers with FAQBOT_NLU_TOKEN."""
    from sanic import response

    token = shared_secrets.require("FAQBOT_NLU_TOKEN")
    app = _rasa_create_app(*args, **kwargs)

    async def authenticate(request: Any) -> Any:
        if request.path == "/" or request.path.startswith("/webhooks/"):
            return None
        if shared_secrets.matches(api_token_given(request), token):
            return None
        logger.warning("HTTP-API: Anfrage ohne gültigen Token von %s auf %s abgewiesen", request.ip, request.path)
        return response.json({"error": "unauthorized", "message": API_UNAUTHORIZED}, status=401)

    app.register_middleware(authenticate, "request")
    return app


def install() -> None:
    global _rasa_load_agent_on_start, _rasa_create_app
    check_targets()
    import rasa.core.run
    import rasa.server
    from rasa.core.actions.action import RemoteAction

    RemoteAction._validate_action_result = _validate_action_result
    # serve_application() registers this function as the server's start-up listener.
    if rasa.core.run.load_agent_on_start is not _load_agent_then_freeze:  # not installed yet
        _rasa_load_agent_on_start = rasa.core.run.load_agent_on_start
        rasa.core.run.load_agent_on_start = _load_agent_then_freeze
    # rasa.core.run.configure_app calls it as server.create_app when the API is enabled.
    if rasa.server.create_app is not _create_app_with_token:
        _rasa_create_app = rasa.server.create_app
        rasa.server.create_app = _create_app_with_token


# Sanic reads a request of up to 100 MB into memory before any channel can refuse it; the
# channels' own limits are far lower (REST: 64 KB), so Sanic refuses anything above 1 MB itself.
MAX_REQUEST_BYTES = 1024 * 1024


def main() -> None:
    check_patches()
    install()
    os.environ.setdefault("SANIC_REQUEST_MAX_SIZE", str(MAX_REQUEST_BYTES))  # Sanic reads SANIC_* settings
    from rasa.__main__ import main as rasa_main

    sys.argv = ["rasa", *sys.argv[1:]]
    rasa_main()


if __name__ == "__main__":
    main()
