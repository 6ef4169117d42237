"""faqbot.core.rate_limit: token buckets per key, configured from the environment."""

from __future__ import annotations

import pytest

from faqbot.core import rate_limit
from faqbot.core.rate_limit import RateLimiter, too_many_message


def test_a_key_gets_its_limit_at_once_then_waits(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(rate_limit.time, "monotonic", lambda: clock[0])
    limiter = RateLimiter(3, window_s=60)
    assert [limiter.allow("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.allow("a") == 20  # one request refills every 20 s
    assert limiter.allow("b") == 0  # other keys are not affected
    clock[0] += 20
    assert limiter.waiting("a") == 0 and limiter.waiting("a") == 0  # looking does not count
    assert limiter.allow("a") == 0 and limiter.allow("a") > 0


def test_zero_switches_a_limit_off_and_bad_values_stop_the_start(monkeypatch):
    monkeypatch.setenv("FAQBOT_RATE_LIMIT_CONVERSATION", "0")
    limiter = RateLimiter.from_environment("CONVERSATION")
    assert all(limiter.allow("a") == 0 for _ in range(1000))
    monkeypatch.setenv("FAQBOT_RATE_LIMIT_CONVERSATION", "viele")
    with pytest.raises(SystemExit, match="FAQBOT_RATE_LIMIT_CONVERSATION"):
        RateLimiter.from_environment("CONVERSATION")


def test_the_daily_cap_of_a_conversation_refills_over_a_day(monkeypatch):
    monkeypatch.setenv("FAQBOT_RATE_LIMIT_CONVERSATION_DAY", "2")
    limiter = RateLimiter.from_environment("CONVERSATION_DAY")
    assert limiter.allow("a") == 0 and limiter.allow("a") == 0
    wait = limiter.allow("a")
    assert wait == 12 * 3600
    assert "für heute" in too_many_message(wait) and "5 Sekunden" in too_many_message(5)


def test_memory_stays_bounded_with_many_addresses(monkeypatch):
    monkeypatch.setattr(RateLimiter, "MAX_KEYS", 100)
    limiter = RateLimiter(5)
    for number in range(1000):
        limiter.allow(f"10.0.{number // 256}.{number % 256}")
    assert len(limiter._buckets) <= 100
