"""Which German spaCy model is installed: the official ``de_core_news_sm`` or the offline stand-in.

The servers, training and the report say so loudly whenever the stand-in is in use;
``faqbot.tools.spacy_model`` installs the model.
"""

from __future__ import annotations

import importlib.metadata

MODEL = "de_core_news_sm"
STANDIN_VERSION = "0.0.0+offline"


def installed_version() -> str | None:
    try:
        return importlib.metadata.version(MODEL)
    except importlib.metadata.PackageNotFoundError:
        return None


def is_standin(version: str | None = None) -> bool:
    return (version or installed_version() or "").endswith("+offline")


def describe() -> str:
    version = installed_version()
    if version is None:
        return f"{MODEL}: nicht installiert"
    if is_standin(version):
        return f"{MODEL} {version}: OFFLINE-ERSATZ (nicht das offizielle Modell)"
    return f"{MODEL} {version}: offizielles spaCy-Modell"


def warning_banner() -> str:
    """Printed by install and start-up whenever the stand-in is in use."""
    line = "!" * 78
    return (
        f"{line}\n"
        f"!! ACHTUNG: {MODEL} ist der OFFLINE-ERSATZ ({installed_version()}),\n"
        f"!! nicht das offizielle spaCy-Modell. Tokenizer + Lookup-Lemmatizer, ohne\n"
        f"!! Tagger/Parser/Vektoren. Mit Netz: make spacy-official\n"
        f"{line}"
    )


def warn_if_standin(log=None) -> None:
    """Called when the servers start (Rasa server, action server): the stand-in must never go unnoticed."""
    if is_standin():
        for line in warning_banner().splitlines():
            (log or print)(line)
