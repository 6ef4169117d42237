"""Small helpers for reading the bot's REST replies."""

from __future__ import annotations

from typing import Any


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [message["text"] for message in messages if message.get("text")]


def customs(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [message["custom"] for message in messages if message.get("custom")]


def buttons(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [button for message in messages for button in message.get("buttons") or []]
