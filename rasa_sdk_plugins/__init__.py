"""rasa-sdk's plugin package: the action server imports ``rasa_sdk_plugins`` at start-up
and calls ``init_hooks``. This project's plugin starts the ticket delivery worker with the
action server (``faqbot.server.action_server``), also under plain ``rasa run actions``."""

from __future__ import annotations

from typing import Any


def init_hooks(manager: Any) -> None:
    from faqbot.server import action_server

    manager.register(action_server)
