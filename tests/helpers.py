"""Small helpers for reading the bot's REST replies."""
from __future__ import annotations

from typing import Any, Dict, List


def texts(messages: List[Dict[str, Any]]) -> List[str]:
    return [message["text"] for message in messages if message.get("text")]


def customs(messages: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [message["custom"] for message in messages if message.get("custom")]


def buttons(messages: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [button for message in messages for button in message.get("buttons") or []]

