"""Checks for the places where this project reaches into Rasa, rasa-sdk or python-socketio.

A patch of a library's internals fails silently after an upgrade: the replaced attribute
is simply never called again. Each patch therefore states, at start-up, which version it
was written for and which attributes it relies on; anything else stops the server with a
clear error instead of running without the patch.

The versions the patches were written for, one per library; after an upgrade, check
each patch that names the library (``check_targets()`` in its module, tests/test_patches.py)
and update the version here.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from typing import Any

RASA_VERSION = "3.6.21"
RASA_SDK_VERSION = "3.6.2"  # its plugin hook starts the delivery worker (faqbot.server.action_server)
SANIC_VERSION = "21.12.2"
PYTHON_SOCKETIO_VERSION = "5.9.0"
PYTHON_ENGINEIO_VERSION = "4.7.1"  # builds the environ (Origin header) the socket.io connect handler reads


class PatchTargetError(RuntimeError):
    """A patched library is not the version, or lacks the attribute, a patch was written for.

    A RuntimeError on purpose: Rasa turns an ImportError or AttributeError while loading a
    custom tracker store into a silent fallback to its in-memory store."""


def require_version(distribution: str, written_for: str, patch: str) -> None:
    try:
        installed = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise PatchTargetError(
            f"{patch} was written for {distribution} {written_for}, which is not installed."
        ) from None
    if installed != written_for:
        raise PatchTargetError(
            f"{patch} was written for {distribution} {written_for}, but {installed} is installed. "
            f"Check the patch against {distribution} {installed} and update the version it names."
        )


def require_attribute(owner: Any, name: str, patch: str, where: str | None = None) -> Any:
    """The attribute ``owner.name``; raises if the library no longer has it. ``where``
    names the owner in the message (default: the class or module, or the object's type)."""
    if not hasattr(owner, name):
        if where is None and (inspect.isclass(owner) or inspect.ismodule(owner)):
            where = getattr(owner, "__qualname__", None) or owner.__name__
        elif where is None:
            where = f"{type(owner).__qualname__} object"
        raise PatchTargetError(f"{patch} relies on {where}.{name}, which the installed version does not have.")
    return getattr(owner, name)
