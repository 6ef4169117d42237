"""Secrets the project's own servers share: from the environment, else made once per installation.

    FAQBOT_ACTION_TOKEN    the Rasa server -> the action server (endpoints.yml sends it)
    FAQBOT_NLU_TOKEN       the Rasa server -> the NLU server of ``make run``
    FAQBOT_SESSION_SECRET  signs the session ids the widget's Socket.IO channel issues
    FAQBOT_HASH_SECRET     keys the review queue's sender hashes (``review_store.sender_hash``)
    FAQBOT_DATA_KEYS       encrypt message texts and contact data in the stores (``faqbot.core.encryption``)
    FAQBOT_METRICS_TOKEN   Prometheus -> ``/metrics`` of every server (``faqbot.server.health``)

Production sets them all in the environment of every host (README, "Security"). Where one
is not set, ``ensure_environment`` creates a random one in ``var/secrets/`` (mode 0600)
and uses it from then on, so a single machine is closed without any set-up; several hosts
must share the environment's values. Print them for plain ``rasa`` commands with
``python -m faqbot.core.shared_secrets`` (shell ``export`` lines).
"""

from __future__ import annotations

import hmac
import os
import secrets
import sys
from pathlib import Path

from faqbot.core.paths import VAR_DIR

LOCAL_SECRETS = (
    "FAQBOT_ACTION_TOKEN",
    "FAQBOT_NLU_TOKEN",
    "FAQBOT_SESSION_SECRET",
    "FAQBOT_HASH_SECRET",
    "FAQBOT_DATA_KEYS",
    "FAQBOT_METRICS_TOKEN",
)
# Values with a form of their own: the data keys are a list of <key id>:<secret> (encryption.py).
LOCAL_FORMATS = {"FAQBOT_DATA_KEYS": "k1:{}"}
MIN_CHARS = 32  # shorter values are guessable; refused at start-up


class WeakSecretError(SystemExit):
    pass


def secrets_dir() -> Path:
    return Path(os.environ.get("FAQBOT_SECRETS_DIR", VAR_DIR / "secrets"))


def local_secret(name: str) -> str:
    """The installation's own value of ``name``, created on first use, readable only by its owner."""
    directory = secrets_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / name
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made earlier, or by a process starting at the same moment
        value = path.read_text(encoding="ascii").strip()
        if value:
            return value
        raise WeakSecretError(f"{path} ist leer: bitte löschen, er wird beim nächsten Start neu erzeugt.") from None
    value = LOCAL_FORMATS.get(name, "{}").format(secrets.token_urlsafe(32))
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    return value


def ensure_environment() -> None:
    """Put each shared secret into this process's environment (children inherit it)."""
    for name in LOCAL_SECRETS:
        if not os.environ.get(name):
            os.environ[name] = local_secret(name)


def require(name: str) -> str:
    """The value of ``name`` from the environment; a missing or short one stops the start."""
    value = os.environ.get(name, "")
    if len(value) < MIN_CHARS:
        raise WeakSecretError(
            f"{name} ist {'zu kurz' if value else 'nicht gesetzt'}: mindestens {MIN_CHARS} zufällige Zeichen, "
            f'zum Beispiel: export {name}="$(python -c "import secrets; print(secrets.token_urlsafe(32))")"'
        )
    return value


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    prefix = "Bearer "
    return authorization[len(prefix) :] if authorization and authorization.startswith(prefix) else None


def matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so response times reveal nothing about the secret."""
    return given is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def main() -> None:
    ensure_environment()
    for name in LOCAL_SECRETS:
        print(f"export {name}={os.environ[name]}")


if __name__ == "__main__":
    sys.exit(main())
