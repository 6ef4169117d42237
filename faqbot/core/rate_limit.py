"""Per-client rate limits of the public channels and the support API (README, "Security").

A token bucket per key (client address, conversation, integration): ``limit`` requests at
once, refilled evenly over ``window_s``. The buckets live in the process: with several
instances each applies the limit on its own (the load balancer spreads a client over them).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass

# Requests per minute; FAQBOT_RATE_LIMIT_<NAME> overrides (0 switches a limit off).
DEFAULT_LIMITS = {
    # Messages of one conversation per day: bounds what one conversation session can store
    # (~8 events per message), which Rasa loads and sends to the action server on every turn.
    "CONVERSATION_DAY": 500,
    "CONVERSATION": 30,  # messages of one conversation: a person types slower than this
    # Requests (REST) or connections and messages (Socket.IO) from one address; generous, as many
    # customers may share one address (company networks, mobile carriers).
    "CLIENT": 300,
    # One authenticated REST integration, all its customers together: off by default (its
    # customers' conversations are limited each); set it to cap a help desk's share.
    "INTEGRATION": 0,
    "SUPPORT": 120,  # support-API requests from one address
    "FAILED_AUTH": 10,  # wrong tokens from one address (REST, support API): then it waits
}
TOO_MANY = (
    "Sie haben in kurzer Zeit sehr viele Nachrichten gesendet. Bitte warten Sie {seconds} Sekunden "
    "und versuchen Sie es dann noch einmal."
)
TOO_MANY_TODAY = (
    "Dieses Gespräch hat die Höchstzahl an Nachrichten für heute erreicht. Bitte versuchen Sie es "
    "später noch einmal oder wenden Sie sich an unseren Kundenservice."
)


WINDOWS_S = {"CONVERSATION_DAY": 24 * 3600}  # all others: per minute


def configured_limit(name: str) -> int:
    raw = os.environ.get(f"FAQBOT_RATE_LIMIT_{name}")
    if raw is None:
        return DEFAULT_LIMITS[name]
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"FAQBOT_RATE_LIMIT_{name}={raw!r} ist keine ganze Zahl.") from None
    if value < 0:
        raise SystemExit(f"FAQBOT_RATE_LIMIT_{name} darf nicht negativ sein.")
    return value


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``allow(key)`` is 0 while ``key`` is within its limit, else the seconds to wait."""

    MAX_KEYS = 100_000  # beyond this, full (idle) buckets are forgotten

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.capacity = limit
        self.rate = limit / window_s if limit else 0.0
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()  # the support API's handlers may run in threads

    @classmethod
    def from_environment(cls, name: str) -> RateLimiter:
        return cls(configured_limit(name), WINDOWS_S.get(name, 60.0))

    def allow(self, key: str) -> int:
        """Counts one request of ``key``; 0 if it may pass, else the seconds to wait."""
        return self._take(key, consume=True)

    def waiting(self, key: str) -> int:
        """The seconds ``key`` must wait before its next request, without counting one."""
        return self._take(key, consume=False)

    def _take(self, key: str, consume: bool) -> int:
        if not self.capacity:
            return 0
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.MAX_KEYS:
                    self._forget_idle(now)
                bucket = self._buckets[key] = _Bucket(self.capacity, now)
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= consume
                return 0
            return max(1, math.ceil((1 - bucket.tokens) / self.rate))

    def _forget_idle(self, now: float) -> None:
        full_after = self.capacity / self.rate
        for key in [key for key, bucket in self._buckets.items() if now - bucket.updated >= full_after]:
            del self._buckets[key]
        if len(self._buckets) >= self.MAX_KEYS:  # all busy: an attack from many addresses
            self._buckets.clear()


def too_many_message(seconds: int) -> str:
    return TOO_MANY.format(seconds=seconds) if seconds <= 120 else TOO_MANY_TODAY
