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
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import rasa.shared.constants
from jsonschema import validators
from jsonschema.exceptions import best_match

from faqbot.server import patches
from faqbot.server.patches import require_attribute, require_version

if TYPE_CHECKING:
    from rasa.core.actions.action import RemoteAction

logger = logging.getLogger("faqbot.server.rasa_server")  # also when run as __main__

PATCH = "faqbot.server.rasa_server (action response check, gc.freeze after loading)"


def check_targets() -> None:
    """Rasa's version, before any of Rasa's server is imported, then what install() replaces."""
    require_version("rasa", patches.RASA_VERSION, PATCH)
    import rasa.core.actions.action
    import rasa.core.run

    remote_action = require_attribute(rasa.core.actions.action, "RemoteAction", PATCH)
    require_attribute(remote_action, "_validate_action_result", PATCH)
    require_attribute(remote_action, "action_response_format_spec", PATCH)
    require_attribute(rasa.core.run, "load_agent_on_start", PATCH)


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


def install() -> None:
    global _rasa_load_agent_on_start
    check_targets()
    import rasa.core.run
    from rasa.core.actions.action import RemoteAction

    RemoteAction._validate_action_result = _validate_action_result
    # serve_application() registers this function as the server's start-up listener.
    if rasa.core.run.load_agent_on_start is not _load_agent_then_freeze:  # not installed yet
        _rasa_load_agent_on_start = rasa.core.run.load_agent_on_start
        rasa.core.run.load_agent_on_start = _load_agent_then_freeze


def main() -> None:
    check_patches()
    install()
    from rasa.__main__ import main as rasa_main

    sys.argv = ["rasa", *sys.argv[1:]]
    rasa_main()


if __name__ == "__main__":
    main()
