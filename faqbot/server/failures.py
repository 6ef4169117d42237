"""What a turn does when a store, lock or server it needs fails: the caller is told to try
again (HTTP 503 with Retry-After, a German message in the widget) and nothing is stored.
Never a silent fallback (README, "Mehrere Instanzen").
"""

from __future__ import annotations

RETRY_AFTER_S = 5
MESSAGE = (
    "Der Chat ist gerade kurz nicht erreichbar. Bitte versuchen Sie es in einigen Sekunden noch einmal; "
    "Ihre bisherige Unterhaltung bleibt erhalten."
)


class ServiceUnavailable(Exception):
    """A store, lock or server this turn needs is not available; the turn was not stored."""


class TurnConflict(ServiceUnavailable):
    """Another instance stored a turn of this conversation in between (the lock was lost):
    this turn was not stored and can be sent again."""
