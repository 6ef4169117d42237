"""Checks for the places where this project reaches into Rasa, rasa-sdk or python-socketio.

A patch of a library's internals fails silently after an upgrade: the replaced attribute
is simply never called again. Each patch therefore states, at start-up, which version it
was written for and which attributes it relies on; anything else stops the server with a
clear error instead of running without the patch.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any


class PatchTargetError(RuntimeError):
    """A patched library is not the version, or lacks the attribute, a patch was written for."""


def require_version(distribution: str, written_for: str, patch: str) -> None:
    installed = importlib.metadata.version(distribution)
    if installed != written_for:
        raise PatchTargetError(
            f"{patch} was written for {distribution} {written_for}, but {installed} is installed. "
            f"Check the patch against {distribution} {installed} and update the version it names."
        )


def require_attribute(owner: Any, name: str, patch: str) -> Any:
    """The attribute ``owner.name``; raises if the library no longer has it."""
    if not hasattr(owner, name):
        where = getattr(owner, "__qualname__", None) or getattr(owner, "__name__", repr(owner))
        raise PatchTargetError(f"{patch} patches {where}.{name}, which the installed version does not have.")
    return getattr(owner, name)
