"""Support hours: when is the support team there, and when will it answer?

Configured in support.yml under ``support_hours`` (weekly hours, holidays, time zone,
Europe/Berlin by default). Without ``support_hours`` the team counts as always reachable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
GERMAN_DAYS = ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"]


def _clock(text: str) -> time:
    hours, minutes = str(text).split(":")
    return time(int(hours), int(minutes))


@dataclass
class SupportHours:
    weekly: dict[int, list[tuple[time, time]]] = field(default_factory=dict)  # weekday -> spans
    holidays: list[date] = field(default_factory=list)
    zone: ZoneInfo = ZoneInfo("Europe/Berlin")

    @classmethod
    def from_config(cls, data: dict[str, Any] | None) -> SupportHours | None:
        """From support.yml's ``support_hours``, e.g. ``{"mon": "09:00-17:00", "holidays": [...]}``."""
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
        return cls(weekly, holidays, ZoneInfo(data.get("timezone") or "Europe/Berlin"))

    def _spans(self, day: date) -> list[tuple[time, time]]:
        return [] if day in self.holidays else self.weekly.get(day.weekday(), [])

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
