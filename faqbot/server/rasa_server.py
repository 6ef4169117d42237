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

Both servers also get ``/health/live``, ``/health/ready`` and ``/metrics`` (``faqbot.server.health``;
Rasa's ``configure_app`` wrapped). Ready means: the model is loaded, the tracker store's database,
the lock store's Redis (if the endpoints file names one), the action server's ``/health`` and the
NLU server (if configured) answer, each within 1 s. ``/metrics`` wants ``FAQBOT_METRICS_TOKEN`` (the NLU server
also takes ``FAQBOT_NLU_TOKEN``). When ``FAQBOT_NLU_URL`` is set and the endpoints file has no
``nlu`` endpoint, the server sends the NLU to that server, with ``FAQBOT_NLU_TOKEN`` (Rasa's
``AvailableEndpoints.read_endpoints`` wrapped): so ``endpoints.production.yml`` works with and
without a separate NLU server.

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

import functools
import gc
import inspect
import logging
import os
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import rasa.shared.constants
from jsonschema import validators
from jsonschema.exceptions import best_match

from faqbot.core import shared_secrets
from faqbot.server import health, patches
from faqbot.server.patches import PatchTargetError, require_attribute, require_version

if TYPE_CHECKING:
    from rasa.core.actions.action import RemoteAction

logger = logging.getLogger("faqbot.server.rasa_server")  # also when run as __main__

PATCH = (
    "faqbot.server.rasa_server (action response check, gc.freeze after loading, API token, "
    "health and metrics, FAQBOT_NLU_URL)"
)


def check_targets() -> None:
    """Rasa's version, before any of Rasa's server is imported, then what install() replaces."""
    require_version("rasa", patches.RASA_VERSION, PATCH)
    import rasa.core.actions.action
    import rasa.core.run
    import rasa.core.utils
    import rasa.server

    remote_action = require_attribute(rasa.core.actions.action, "RemoteAction", PATCH)
    require_attribute(remote_action, "_validate_action_result", PATCH)
    require_attribute(remote_action, "action_response_format_spec", PATCH)
    require_attribute(rasa.core.run, "load_agent_on_start", PATCH)
    require_attribute(rasa.core.run, "configure_app", PATCH)
    require_attribute(rasa.server, "create_app", PATCH)
    endpoints = require_attribute(rasa.core.utils, "AvailableEndpoints", PATCH)
    if not isinstance(inspect.getattr_static(endpoints, "read_endpoints", None), classmethod):
        raise PatchTargetError(f"{PATCH} relies on AvailableEndpoints.read_endpoints, a classmethod in Rasa 3.6.")


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
    app.register_middleware(health.start_timer, "request")  # before the refusals, so they are timed too

    async def authenticate(request: Any) -> Any:
        if request.path == "/" or request.path.startswith("/webhooks/") or request.path in health.OPEN_PATHS:
            return None
        if shared_secrets.matches(api_token_given(request), token):
            return None
        logger.warning("HTTP-API: Anfrage ohne gültigen Token von %s auf %s abgewiesen", request.ip, request.path)
        return response.json({"error": "unauthorized", "message": API_UNAUTHORIZED}, status=401)

    app.register_middleware(authenticate, "request")
    return app


def rasa_checks(app: Any, lock_store: health.Check | None) -> list[health.Check]:
    """What a turn needs, from the agent Rasa loaded (built again if the model is replaced)."""
    agent = getattr(app.ctx, "agent", None)
    built = getattr(app.ctx, "faqbot_checks", None)
    if built is not None and built[0] is agent:
        return built[1]

    async def model_loaded() -> bool:
        return agent is not None and agent.is_ready()

    checks = [health.Check("model", "Das Modell ist nicht geladen.", model_loaded)]
    if agent is not None:
        checks += _tracker_store_checks(agent) + ([lock_store] if lock_store else []) + _server_checks(agent)
    app.ctx.faqbot_checks = (agent, checks)
    return checks


def _tracker_store_checks(agent: Any) -> list[health.Check]:
    from rasa.core.tracker_store import InMemoryTrackerStore

    store = getattr(agent.tracker_store, "_tracker_store", agent.tracker_store)  # Rasa's FailSafeTrackerStore
    if hasattr(store, "engine"):  # Rasa's SQL store and ours
        probe = health.database_probe(store.engine.url)
        return [health.Check("tracker_store", "Die Datenbank der Gespräche antwortet nicht.", probe)]
    if isinstance(store, InMemoryTrackerStore):
        return []

    async def unverifiable() -> bool:
        return False

    return [health.Check("tracker_store", f"{type(store).__name__} kann nicht geprüft werden.", unverifiable)]


def lock_store_check(config: Any) -> health.Check | None:
    """The Redis of the lock store in the endpoints file (Rasa's RedisLockStore or ours,
    same settings), with a client of its own; None for the in-memory lock store."""
    if config is None or config.type == "in_memory":
        return None
    settings = config.kwargs
    probe = health.redis_probe(
        config.url or "localhost", settings.get("port"), settings.get("db"), settings.get("password")
    )
    return health.Check("lock_store", "Redis (Sperren der Gespräche) antwortet nicht.", probe)


def _server_checks(agent: Any) -> list[health.Check]:
    checks = []
    if agent.action_endpoint is not None and agent.action_endpoint.url:
        base = agent.action_endpoint.url.rstrip("/").removesuffix("/webhook")
        probe = health.http_probe(f"{base}/health")
        checks.append(health.Check("action_server", "Der Action-Server antwortet nicht.", probe))
    if agent.http_interpreter is not None:  # Rasa's root route answers once the NLU server has loaded its model
        probe = health.http_probe(f"{agent.http_interpreter.endpoint_config.url.rstrip('/')}/")
        checks.append(health.Check("nlu_server", "Der NLU-Server antwortet nicht.", probe))
    return checks


async def check_agent(app: Any, loop: Any) -> None:
    """What rasa_checks reads from the agent: set by Rasa while it starts."""
    agent = require_attribute(app.ctx, "agent", PATCH, where="app.ctx")
    for name in ("is_ready", "tracker_store", "lock_store", "action_endpoint", "http_interpreter"):
        require_attribute(agent, name, PATCH, where="app.ctx.agent")


_rasa_configure_app: Any = None  # Rasa's function, kept by install()


def _configure_app_with_health(*args: Any, **kwargs: Any) -> Any:
    app = _rasa_configure_app(*args, **kwargs)
    settings = inspect.signature(_rasa_configure_app).bind(*args, **kwargs)
    settings.apply_defaults()
    tokens = [shared_secrets.require("FAQBOT_METRICS_TOKEN")]
    if settings.arguments["enable_api"]:
        tokens.append(shared_secrets.require("FAQBOT_NLU_TOKEN"))
    # The NLU server of `make run` has no channels.
    server = "rasa" if settings.arguments["input_channels"] else "nlu"
    endpoints = settings.arguments["endpoints"]
    lock_store = lock_store_check(endpoints.lock_store if endpoints else None)
    health.add_endpoints(app, server, functools.partial(rasa_checks, lock_store=lock_store), tokens)
    app.register_listener(check_agent, "after_server_start")
    return app


_rasa_read_endpoints: Any = None  # Rasa's classmethod, bound to its class, kept by install()


def _read_endpoints_with_nlu_url(cls: Any, endpoint_file: Any) -> Any:
    """The endpoints file, plus FAQBOT_NLU_URL as ``nlu`` endpoint when the file names none."""
    from rasa.utils.endpoints import EndpointConfig

    endpoints = _rasa_read_endpoints(endpoint_file)
    url = os.environ.get("FAQBOT_NLU_URL")
    if url and endpoints.nlu is None:
        endpoints.nlu = EndpointConfig(url=url, token=shared_secrets.require("FAQBOT_NLU_TOKEN"))
    return endpoints


def install() -> None:
    global _rasa_load_agent_on_start, _rasa_create_app, _rasa_configure_app, _rasa_read_endpoints
    check_targets()
    import rasa.core.run
    import rasa.server
    from rasa.core.actions.action import RemoteAction
    from rasa.core.utils import AvailableEndpoints

    RemoteAction._validate_action_result = _validate_action_result
    # serve_application() registers this function as the server's start-up listener.
    if rasa.core.run.load_agent_on_start is not _load_agent_then_freeze:  # not installed yet
        _rasa_load_agent_on_start = rasa.core.run.load_agent_on_start
        rasa.core.run.load_agent_on_start = _load_agent_then_freeze
    # rasa.core.run.configure_app calls it as server.create_app when the API is enabled.
    if rasa.server.create_app is not _create_app_with_token:
        _rasa_create_app = rasa.server.create_app
        rasa.server.create_app = _create_app_with_token
    # serve_application() builds the app of both servers with it.
    if rasa.core.run.configure_app is not _configure_app_with_health:
        _rasa_configure_app = rasa.core.run.configure_app
        rasa.core.run.configure_app = _configure_app_with_health
    # rasa.cli.run and rasa.api.run read the endpoints file with it.
    if inspect.getattr_static(AvailableEndpoints, "read_endpoints").__func__ is not _read_endpoints_with_nlu_url:
        _rasa_read_endpoints = AvailableEndpoints.read_endpoints
        AvailableEndpoints.read_endpoints = classmethod(_read_endpoints_with_nlu_url)


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
