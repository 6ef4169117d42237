"""Support hours with fixed datetimes (Europe/Berlin)."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from faqbot.core.support_hours import SupportAvailability, SupportHours, german_time, reply_deadline

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


WEEKDAYS = {day: "09:00-17:00" for day in ["mon", "tue", "wed", "thu", "fri"]}


def at(*args) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def weekdays(**extra) -> SupportHours:
    """Monday to Friday 9-17, plus ``state``/``holidays`` as in support.yml."""
    return SupportHours.from_config({**WEEKDAYS, **extra})


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


def test_public_holidays_need_no_list():
    now = at(2026, 12, 24, 17, 30)  # Thursday; Christmas Day is a Friday
    assert weekdays().next_opening(now) == at(2026, 12, 28, 9, 0)
    assert german_time(weekdays().next_opening(now), now) == "Montag, 28.12., um 9:00 Uhr"


def test_movable_holidays_follow_easter():
    # Good Friday and Easter Monday: 3/6 April in 2026, 26/29 March in 2027.
    assert weekdays().next_opening(at(2026, 4, 2, 18, 0)) == at(2026, 4, 7, 9, 0)
    assert weekdays().next_opening(at(2027, 3, 25, 18, 0)) == at(2027, 3, 30, 9, 0)


def test_state_adds_its_own_holidays():
    wednesday_evening = at(2026, 6, 3, 18, 0)  # Corpus Christi (Fronleichnam) is Thursday, 4 June
    assert weekdays(state="BY").next_opening(wednesday_evening) == at(2026, 6, 5, 9, 0)
    assert weekdays(state="Bayern").next_opening(wednesday_evening) == at(2026, 6, 5, 9, 0)
    assert weekdays(state="BE").next_opening(wednesday_evening) == at(2026, 6, 4, 9, 0)
    assert weekdays().next_opening(wednesday_evening) == at(2026, 6, 4, 9, 0)


def test_holiday_list_adds_closed_days():
    assert weekdays().next_opening(at(2026, 12, 23, 18, 0)) == at(2026, 12, 24, 9, 0)
    extra = weekdays(state="BE", holidays=["2026-12-24", "2026-12-31"])
    assert extra.next_opening(at(2026, 12, 23, 18, 0)) == at(2026, 12, 28, 9, 0)
    # 31 December from the list, then New Year's Day (public) and the weekend.
    assert extra.next_opening(at(2026, 12, 30, 18, 0)) == at(2027, 1, 4, 9, 0)


def test_unknown_state_is_a_clear_error():
    with pytest.raises(ValueError, match="Unbekanntes Bundesland „XY“ unter support_hours.state.*BY"):
        weekdays(state="XY")


EIGHT_HOURS = timedelta(hours=8)


def test_reply_time_counts_working_hours_only():
    # Wednesday 10:07 + 8 working hours (9-17): Thursday 10:07, promised as 11:00.
    assert HOURS.after_working_time(at(2026, 11, 25, 10, 7), EIGHT_HOURS) == at(2026, 11, 26, 10, 7)
    assert reply_deadline(HOURS, EIGHT_HOURS, at(2026, 11, 25, 10, 7)) == at(2026, 11, 26, 11, 0)
    # Thursday 16:00: 1 h Thursday, Friday 3 h + 2 h around the lunch break, Monday 9-11.
    assert reply_deadline(HOURS, EIGHT_HOURS, at(2026, 11, 26, 16, 0)) == at(2026, 11, 30, 11, 0)
    # Opened at night: counted from the next opening; holidays (24/25 Dec) skipped.
    assert reply_deadline(HOURS, EIGHT_HOURS, at(2026, 12, 23, 20, 0)) == at(2026, 12, 28, 17, 0)
    now = at(2026, 11, 27, 16, 0)  # Friday after closing
    assert german_time(reply_deadline(HOURS, EIGHT_HOURS, now), now) == "Montag, 30.11., um 17:00 Uhr"


def test_reply_time_without_support_hours_is_plain_hours_in_german_time():
    utc_now = datetime(2026, 11, 25, 7, 30, tzinfo=ZoneInfo("UTC"))  # 8:30 in Berlin
    assert reply_deadline(None, EIGHT_HOURS, utc_now) == at(2026, 11, 25, 17, 0)
    assert reply_deadline(None, EIGHT_HOURS, utc_now).utcoffset() == timedelta(hours=1)


def test_availability_from_support_yml():
    config = {"support_hours": WEEKDAYS, "reply_within_hours": 4}
    closed = SupportAvailability.from_config(config, at(2026, 11, 27, 18, 0))
    assert closed.closed_until == at(2026, 11, 30, 9, 0) and closed.reply_by == at(2026, 11, 30, 13, 0)
    open_now = SupportAvailability.from_config(config, at(2026, 11, 27, 10, 30))
    assert open_now.closed_until is None and open_now.reply_by == at(2026, 11, 27, 15, 0)
    assert SupportAvailability.from_config({}, at(2026, 11, 27, 10, 30)).reply_by is None


@pytest.mark.parametrize("within", ["acht", 0, -2, True, [8]])
def test_a_wrong_reply_time_is_a_clear_error(within):
    with pytest.raises(ValueError, match="reply_within_hours muss eine Stundenzahl größer als 0 sein"):
        SupportAvailability.from_config({"reply_within_hours": within}, at(2026, 11, 27, 10, 30))
