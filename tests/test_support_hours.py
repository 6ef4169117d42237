"""Support hours with fixed datetimes (Europe/Berlin)."""

from datetime import datetime
from zoneinfo import ZoneInfo

from faqbot.core.support_hours import SupportHours, german_time

BERLIN = ZoneInfo("Europe/Berlin")
HOURS = SupportHours.from_config(
    {
        "mon": "09:00-17:00",
        "tue": "09:00-17:00",
        "wed": "09:00-17:00",
        "thu": "09:00-17:00",
        "fri": ["09:00-12:00", "13:00-15:00"],
        "holidays": ["2026-12-24", "2026-12-25"],
    }
)


def at(*args) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def test_open_during_hours():
    assert HOURS.next_opening(at(2026, 11, 25, 10, 0)) is None  # Wednesday


def test_before_opening_the_same_day():
    now = at(2026, 11, 25, 7, 30)
    assert HOURS.next_opening(now) == at(2026, 11, 25, 9, 0)
    assert german_time(HOURS.next_opening(now), now) == "heute um 9:00 Uhr"


def test_evening_means_tomorrow_and_lunch_break_means_after_it():
    now = at(2026, 11, 25, 18, 0)
    assert german_time(HOURS.next_opening(now), now) == "morgen um 9:00 Uhr"
    assert HOURS.next_opening(at(2026, 11, 27, 12, 30)) == at(2026, 11, 27, 13, 0)


def test_weekend_and_holidays_are_skipped():
    now = at(2026, 11, 27, 16, 0)  # Friday after closing
    assert german_time(HOURS.next_opening(now), now) == "Montag, 30.11., um 9:00 Uhr"
    assert HOURS.next_opening(at(2026, 12, 23, 17, 30)) == at(2026, 12, 28, 9, 0)


def test_time_zone_is_respected_for_utc_input():
    utc_now = datetime(2026, 11, 25, 7, 30, tzinfo=ZoneInfo("UTC"))  # 8:30 in Berlin
    assert HOURS.next_opening(utc_now) == at(2026, 11, 25, 9, 0)


def test_no_hours_configured_means_always_reachable():
    assert SupportHours.from_config(None) is None
