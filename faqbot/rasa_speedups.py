"""Two speed-ups of Rasa 3.6's serving path that Rasa has no setting for.

* Rasa checks every custom-action response with ``jsonschema.validate()``, which first
  checks the (constant) response schema itself: ~3.5 ms of the Rasa server's CPU per action
  call, ~11 % under load (README, "Speed"). Here the response is checked against a
  validator built once, with the same errors.
* The loaded model and libraries are ~600,000 Python objects. Each full garbage
  collection walked all of them: 250-300 ms in which the server answered nobody, the
  worst latencies under load. Once the model is loaded they are frozen (``gc.freeze``): kept for the
  life of the process (as the model is; a model swapped in at run time through the HTTP
  API keeps the old one's objects) and no longer walked.

Installed when Rasa loads the project's tracker store (``faqbot.tracker_store``, named in
``endpoints.yml``), so ``rasa run`` and ``make run`` both get them.
"""
from __future__ import annotations

import asyncio
import gc
from functools import lru_cache
from typing import Any, Dict

from jsonschema import validators
from jsonschema.exceptions import best_match
from rasa.core.actions.action import RemoteAction
from rasa.shared.constants import DOCS_BASE_URL
from sanic import Sanic
from sanic.exceptions import SanicException


@lru_cache(maxsize=1)
def _response_validator() -> Any:
    schema = RemoteAction.action_response_format_spec()
    validator_class = validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def _validate_action_result(self: RemoteAction, result: Dict[str, Any]) -> bool:
    error = best_match(_response_validator().iter_errors(result))
    if error is None:
        return True
    # Rasa's own message for an invalid action server response.
    error.message += (". Failed to validate Action server response from API, make sure "
                      "your response from the Action endpoint is valid. For more information "
                      f"about the format visit {DOCS_BASE_URL}/custom-actions")
    raise error


async def _freeze_heap_once_model_loaded(app: Sanic) -> None:
    while not (getattr(app.ctx, "agent", None) and app.ctx.agent.is_ready()):
        await asyncio.sleep(0.2)
    gc.collect()
    gc.freeze()


def install() -> None:
    RemoteAction._validate_action_result = _validate_action_result
    try:  # inside the Rasa server, which is loading its model right now
        app, loop = Sanic.get_app(), asyncio.get_running_loop()  # with or without --enable-api
    except (SanicException, RuntimeError):
        return  # imported elsewhere (tests, tools): nothing to freeze
    loop.create_task(_freeze_heap_once_model_loaded(app))

