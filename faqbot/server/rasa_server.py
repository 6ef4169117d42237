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
"""

from __future__ import annotations

import gc
import logging
import sys
from functools import lru_cache
from typing import Any

import rasa.core.run
from jsonschema import validators
from jsonschema.exceptions import best_match
from rasa.core.actions.action import RemoteAction
from rasa.shared.constants import DOCS_BASE_URL

logger = logging.getLogger("faqbot.server.rasa_server")  # also when run as __main__


@lru_cache(maxsize=1)
def _response_validator() -> Any:
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
        f"about the format visit {DOCS_BASE_URL}/custom-actions"
    )
    raise error


_load_agent_on_start = rasa.core.run.load_agent_on_start


async def _load_agent_then_freeze(*args: Any, **kwargs: Any) -> Any:
    agent = await _load_agent_on_start(*args, **kwargs)
    gc.collect()
    gc.freeze()
    logger.info("Modell geladen; %d Objekte vom Garbage Collector ausgenommen.", gc.get_freeze_count())
    return agent


def install() -> None:
    RemoteAction._validate_action_result = _validate_action_result
    # serve_application() registers this function as the server's start-up listener.
    rasa.core.run.load_agent_on_start = _load_agent_then_freeze


def main() -> None:
    from rasa.__main__ import main as rasa_main

    install()
    sys.argv = ["rasa", *sys.argv[1:]]
    rasa_main()


if __name__ == "__main__":
    main()
