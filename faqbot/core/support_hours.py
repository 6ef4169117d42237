"""Support hours: when is the support team there, and when will it answer?

Configured in support.yml under ``support_hours`` (weekly hours, time zone, Europe/Berlin
by default). Without ``support_hours`` the team counts as always reachable. German public
holidays come from the ``holidays`` package: the nationwide ones, plus those of the federal
state named by ``state`` (e.g. ``BY``); ``holidays`` lists extra closed days such as company
holidays or 24/31 December. ``reply_within_hours`` (top level) is the time frame the
customer is promised with a ticket, in the team's working hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from holidays import Germany

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
BERLIN = ZoneInfo("Europe/Berlin")
GERMAN_DAYS = ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"]


def _clock(text: str) -> time:
    hours, minutes = str(text).split(":")
    return time(int(hours), int(minutes))


def german_public_holidays(state: str | None = None) -> Germany:
    """Nationwide German public holidays, plus those of ``state`` (a code such as BY, or a name such as Bayern)."""
    if state is None:
        return Germany()
    known = isinstance(state, str) and (state in Germany.subdivisions or state in Germany.subdivisions_aliases)
    if not known:
        raise ValueError(
            f"Unbekanntes Bundesland „{state}“ unter support_hours.state. "
            f"Bitte geben Sie einen dieser Werte an: {', '.join(Germany.subdivisions)} (z. B. BY für Bayern)."
        )
    return Germany(subdiv=state)


@dataclass
class SupportHours:
    weekly: dict[int, list[tuple[time, time]]] = field(default_factory=dict)  # weekday -> spans
    holidays: list[date] = field(default_factory=list)  # extra closed days (support.yml's list)
    zone: ZoneInfo = BERLIN
    public_holidays: Germany = field(default_factory=Germany)  # fills in any year it is asked about

    @classmethod
    def from_config(cls, data: dict[str, Any] | None) -> SupportHours | None:
        """From support.yml's ``support_hours``, e.g. ``{"mon": "09:00-17:00", "state": "BY", "holidays": [...]}``."""
        if not data:
            return None
        weekly = {}
        for index, day in enumerate(DAYS):
            spans = data.get(day) or []
            spans = [spans] if isinstance(spans, str) else spans
            weekly[index] = [tuple(_clock(part) for part in span.split("-")) for span in spans]
        holidays = [
            value if isinstance(value, date) else date.fromisoformat(str(value)) for value in data.get("holidays") or []
        ]
        zone = ZoneInfo(data.get("timezone") or "Europe/Berlin")
        return cls(weekly, holidays, zone, german_public_holidays(data.get("state")))

    def _spans(self, day: date) -> list[tuple[time, time]]:
        closed = day in self.holidays or day in self.public_holidays
        return [] if closed else self.weekly.get(day.weekday(), [])

    def next_opening(self, now: datetime) -> datetime | None:
        """None while the team is there, else the (local) time it opens next."""
        local = now.astimezone(self.zone)
        for offset in range(0, 366):
            day = local.date() + timedelta(days=offset)
            for start, end in sorted(self._spans(day)):
                opens = datetime.combine(day, start, self.zone)
                closes = datetime.combine(day, end, self.zone)
                if opens <= local < closes:
                    return None
                if local < opens:
                    return opens
        return None  # no hours configured at all: nothing sensible to promise

    def after_working_time(self, now: datetime, duration: timedelta) -> datetime | None:
        """When ``duration`` of the team's working time has passed after ``now`` (local
        time); None if the hours of the next year do not add up to it."""
        local, remaining = now.astimezone(self.zone), duration
        for offset in range(0, 366):
            day = local.date() + timedelta(days=offset)
            for start, end in sorted(self._spans(day)):
                opens = max(datetime.combine(day, start, self.zone), local)
                closes = datetime.combine(day, end, self.zone)
                if closes <= opens:
                    continue
                if remaining <= closes - opens:
                    return opens + remaining
                remaining -= closes - opens
        return None


def reply_deadline(hours: SupportHours | None, within: timedelta, now: datetime) -> datetime | None:
    """By when the team answers a ticket opened ``now``: ``within`` of its working time,
    rounded up to the full hour (a promise, not a stopwatch). Without support hours the
    team counts as always there."""
    moment = hours.after_working_time(now, within) if hours else (now + within).astimezone(BERLIN)
    if moment is None:
        return None
    rounded = moment.replace(minute=0, second=0, microsecond=0)
    return rounded if rounded == moment else rounded + timedelta(hours=1)


def german_time(moment: datetime, now: datetime) -> str:
    """ "heute um 9:00 Uhr", "morgen um 9:00 Uhr" or "Montag, 6.1., um 9:00 Uhr"."""
    local_now = now.astimezone(moment.tzinfo)
    clock = f"{moment.hour}:{moment.minute:02d} Uhr"
    days = (moment.date() - local_now.date()).days
    if days == 0:
        return f"heute um {clock}"
    if days == 1:
        return f"morgen um {clock}"
    return f"{GERMAN_DAYS[moment.weekday()]}, {moment.day}.{moment.month}., um {clock}"


@dataclass
class SupportAvailability:
    """When the support team is back (None while it is there) and by when it answers a
    ticket opened now (support.yml: ``support_hours``, ``reply_within_hours``)."""

    closed_until: datetime | None
    reply_by: datetime | None

    @classmethod
    def from_config(cls, config: dict[str, Any], now: datetime) -> SupportAvailability:
        hours = SupportHours.from_config(config.get("support_hours"))
        within = config.get("reply_within_hours")
        if within is not None and (isinstance(within, bool) or not isinstance(within, (int, float)) or within <= 0):
            raise ValueError(f"reply_within_hours muss eine Stundenzahl größer als 0 sein (z. B. 8), nicht {within!r}.")
        return cls(
            closed_until=hours.next_opening(now) if hours else None,
            reply_by=reply_deadline(hours, timedelta(hours=within), now) if within else None,
        )
