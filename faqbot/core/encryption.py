"""Encryption at rest of message texts and contact data in the bot's own stores (README, "Datenschutz").

Encrypted: the conversation events (Rasa's ``events.data``), the tickets' question,
transcript and contact, the outbox rows' payload, and the review queue's texts and the
phrasings taken from them. What stays readable holds no message text or contact data and
is what the stores query by: ids, conversation ids, timestamps, event types, intent and
action names, statuses.

``FAQBOT_DATA_KEYS`` holds the keys: ``<key id>:<secret>`` entries separated by commas,
each secret at least 32 random characters. The first entry encrypts; every entry decrypts
what was written with its id, so a new key goes first and the old one stays after it until
``faqbot-datenschutz schluessel-wechseln`` has encrypted everything again with the new one.
Unset, a key ``k1`` is created once in ``var/secrets/`` (``faqbot.core.shared_secrets``),
like the servers' other shared secrets; several hosts must share the environment's value.

A value is stored as ``enc1:<key id>:<base64(nonce + ciphertext)>``: AES-256-GCM with a
random 96-bit nonce, the key derived from the secret with HKDF-SHA256, and the column's
name (``events.data``, ``tickets.transcript``, ...) as associated data, so a value moved to
another column does not decrypt. Values without the ``enc1:`` prefix, written before
encryption, are read as they are. A value that does not decrypt (unknown key id, wrong
secret, changed bytes) raises ``DataKeyError``: never a garbled text.

Cost: the Rasa server decrypts a conversation's events on every turn. Keys are derived
once per value of FAQBOT_DATA_KEYS; decrypting a 1.5 KB event takes a few microseconds
(base64 with ``binascii``: the URL-safe variant of ``base64`` alone took three times as long).
"""

from __future__ import annotations

import binascii
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from faqbot.core import shared_secrets

KEYS_VARIABLE = "FAQBOT_DATA_KEYS"
PREFIX = "enc1:"
NONCE_BYTES = 12
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_HKDF_INFO = b"faqbot data at rest, AES-256-GCM, v1"


class DataKeyError(ValueError):
    """FAQBOT_DATA_KEYS is unusable, or a stored value does not decrypt with it."""


@dataclass(frozen=True)
class Keyring:
    current: str  # the id of the key that encrypts
    ciphers: dict[str, AESGCM]

    @property
    def current_prefix(self) -> str:
        return f"{PREFIX}{self.current}:"


def _derive(secret: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret.encode("utf-8"))
    return AESGCM(key)


@functools.lru_cache(maxsize=4)
def _keyring(raw: str) -> Keyring:
    """The keys of one value of FAQBOT_DATA_KEYS, derived once (cached by the value)."""
    ciphers: dict[str, AESGCM] = {}
    for number, entry in enumerate(raw.split(","), 1):
        key_id, colon, secret = entry.strip().partition(":")
        if not colon or not KEY_ID.fullmatch(key_id):
            raise DataKeyError(
                f"{KEYS_VARIABLE}: Eintrag {number} hat nicht die Form <Kennung>:<Geheimnis> "
                "(Kennung: Buchstaben, Ziffern, - oder _, höchstens 32 Zeichen)"
            )
        if len(secret.strip()) < shared_secrets.MIN_CHARS:
            raise DataKeyError(
                f"{KEYS_VARIABLE}: das Geheimnis des Schlüssels „{key_id}“ ist zu kurz: mindestens "
                f"{shared_secrets.MIN_CHARS} zufällige Zeichen, zum Beispiel "
                '"$(python -c "import secrets; print(secrets.token_urlsafe(32))")"'
            )
        if key_id in ciphers:
            raise DataKeyError(f"{KEYS_VARIABLE}: die Kennung „{key_id}“ kommt zweimal vor")
        ciphers[key_id] = _derive(secret.strip())
    return Keyring(next(iter(ciphers)), ciphers)


def keyring() -> Keyring:
    """The keys from FAQBOT_DATA_KEYS; unset, this installation's own key (made once in var/secrets)."""
    raw = os.environ.get(KEYS_VARIABLE)
    if not raw:
        raw = os.environ[KEYS_VARIABLE] = shared_secrets.local_secret(KEYS_VARIABLE)
    return _keyring(raw)


def check() -> str:
    """At start-up: unusable keys stop the process (with the reason). Returns the current key's id."""
    try:
        return keyring().current
    except DataKeyError as error:
        raise shared_secrets.WeakSecretError(str(error)) from None


def encrypt(value: str | None, field: str) -> str | None:
    """``value`` encrypted with the current key for the column ``field`` (e.g. ``"events.data"``)."""
    if value is None:
        return None
    ring = keyring()
    nonce = os.urandom(NONCE_BYTES)
    sealed = ring.ciphers[ring.current].encrypt(nonce, value.encode("utf-8"), field.encode("ascii"))
    return ring.current_prefix + binascii.b2a_base64(nonce + sealed, newline=False).decode("ascii")


def decrypt(value: str | None, field: str) -> str | None:
    """The text of a stored value of the column ``field``; values stored before encryption as they are."""
    if value is None or not value.startswith(PREFIX):
        return value
    key_id, colon, body = value[len(PREFIX) :].partition(":")
    cipher = keyring().ciphers.get(key_id)
    if cipher is None:
        raise DataKeyError(
            f"Ein Wert in {field} ist mit dem Schlüssel „{key_id}“ verschlüsselt, der nicht in "
            f"{KEYS_VARIABLE} steht: den alten Schlüssel wieder nach dem aktuellen eintragen"
        )
    try:
        raw = binascii.a2b_base64(body)
        plain = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], field.encode("ascii"))
        return plain.decode("utf-8")
    except (InvalidTag, ValueError):  # binascii.Error is a ValueError
        raise DataKeyError(
            f"Ein Wert in {field} lässt sich mit dem Schlüssel „{key_id}“ aus {KEYS_VARIABLE} nicht "
            "entschlüsseln: anderes Geheimnis unter dieser Kennung, oder der Wert wurde verändert"
        ) from None


def is_current(value: str | None) -> bool:
    """Whether the value is encrypted with the current key (or empty: nothing to encrypt)."""
    return value is None or value.startswith(keyring().current_prefix)


def reencrypt(value: str | None, field: str) -> str | None:
    """The value encrypted with the current key: unchanged if it is already, else decrypted
    (or read as it is, if stored before encryption) and encrypted again."""
    return value if is_current(value) else encrypt(decrypt(value, field), field)


SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_file(path: str | Path) -> None:
    """Make a SQLite database file readable only by its owner (0600), before SQLite opens it.

    A missing file is created empty with mode 0600 (SQLite starts a new database in an empty
    file); an existing one and its side files are set to 0600. SQLite creates the write-ahead
    log, shared memory and rollback journal with the mode of the database file, so they are
    0600 too.
    """
    path = Path(path)
    if str(path) in ("", ":memory:"):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_SIDE_FILES)):
        try:
            if file.stat().st_mode & 0o777 != 0o600:
                file.chmod(0o600)
        except FileNotFoundError:
            pass
