"""Business hours: which seconds between two instants count as working time.

A :class:`BusinessCalendar` is a time zone, weekly working hours (wall-clock
windows per weekday, several per day allowed) and holidays (local dates).
Each day's windows are turned into UTC instants through the time zone, so a
daylight-saving change is counted right: on 2026-10-25 in Europe/Paris a
00:00-24:00 window lasts 25 hours and 09:00-18:00 still lasts 9.

The routing stage uses it for business-hours SLA clocks
(:meth:`add_business_seconds`); the KPI events store
:meth:`business_seconds_between` once per event (``kpi_events.business_seconds``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: the calendar when nothing is configured: Monday to Friday, 09:00-18:00
DEFAULT_HOURS = {day: ("09:00-18:00",) for day in DAYS[:5]}
#: how far add_business_seconds looks ahead before giving up (a calendar of holidays only)
_MAX_DAYS = 3 * 366
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _minutes(h: str, m: str, what: str) -> int:
    value = int(h) * 60 + int(m)
    if int(m) > 59 or value > 24 * 60:
        raise ValueError(f"{what}: not a time of day")
    return value


def parse_window(text: str) -> tuple[int, int]:
    """``"09:00-18:00"`` -> (540, 1080) minutes after local midnight (``24:00`` allowed as an end)."""
    match = _WINDOW.match(text)
    if not match:
        raise ValueError(f"working hours {text!r}: expected HH:MM-HH:MM, e.g. 09:00-18:00")
    start = _minutes(match[1], match[2], text)
    end = _minutes(match[3], match[4], text)
    if end <= start:
        raise ValueError(f"working hours {text!r}: the end must be after the start")
    return start, end


@dataclass(frozen=True)
class BusinessCalendar:
    """Working time in one time zone.

    ``hours[weekday]`` (0 = Monday) is a tuple of (start, end) minutes after
    local midnight, sorted and not overlapping. ``holidays`` are local dates
    with no working time at all.
    """

    timezone: str = "Europe/Paris"
    hours: Mapping[int, tuple[tuple[int, int], ...]] = field(
        default_factory=lambda: {d: ((540, 1080),) for d in range(5)}
    )
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # raises for an unknown zone
        for day, windows in self.hours.items():
            if not 0 <= day <= 6:
                raise ValueError(f"weekday {day} is not 0 (Monday) to 6 (Sunday)")
            previous_end = -1
            for start, end in windows:
                if not 0 <= start < end <= 24 * 60 or start < previous_end:
                    raise ValueError(f"working hours of weekday {day} overlap or are out of order")
                previous_end = end

    @classmethod
    def from_config(
        cls,
        timezone: str,
        hours: Mapping[str, Iterable[str]] | None = None,
        holidays: Iterable[str | date] = (),
    ) -> BusinessCalendar:
        """Build from plain config: ``{"mon": ["09:00-12:30", "13:30-18:00"], ...}``, ISO dates."""
        table: dict[int, tuple[tuple[int, int], ...]] = {}
        for name, windows in (DEFAULT_HOURS if hours is None else hours).items():
            key = name.strip().lower()[:3]
            if key not in DAYS:
                raise ValueError(f"working hours: unknown day {name!r} (mon, tue, ... sun)")
            if isinstance(windows, str):
                windows = [windows]
            table[DAYS.index(key)] = tuple(sorted(parse_window(w) for w in windows))
        days = frozenset(d if isinstance(d, date) else date.fromisoformat(str(d).strip()) for d in holidays)
        return cls(timezone=timezone, hours=table, holidays=days)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_working_day(self, day: date) -> bool:
        return day not in self.holidays and bool(self.hours.get(day.weekday()))

    def windows(self, first_day: date, last_day: date) -> Iterator[tuple[datetime, datetime]]:
        """The working windows of the local days ``first_day``..``last_day``, as UTC instants."""
        zone = self.zone
        day = first_day
        while day <= last_day:
            if day not in self.holidays:
                for start, end in self.hours.get(day.weekday(), ()):
                    yield self._instant(day, start, zone), self._instant(day, end, zone)
            day += timedelta(days=1)

    @staticmethod
    def _instant(day: date, minutes: int, zone: ZoneInfo) -> datetime:
        if minutes == 24 * 60:
            day, minutes = day + timedelta(days=1), 0
        local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)
        # a wall-clock time skipped by a spring-forward change maps to the instant after the gap
        return local.astimezone(UTC)

    def _local_day(self, instant: datetime) -> date:
        return _aware(instant).astimezone(self.zone).date()

    def business_seconds_between(self, a: datetime, b: datetime) -> float:
        """Working seconds in ``[a, b)`` (0 when ``b`` is not after ``a``). Both must be aware."""
        a, b = _aware(a), _aware(b)
        if b <= a:
            return 0.0
        total = 0.0
        for start, end in self.windows(self._local_day(a), self._local_day(b)):
            lo, hi = max(start, a), min(end, b)
            if hi > lo:
                total += (hi - lo).total_seconds()
        return total

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        """The instant when ``seconds`` of working time have passed since ``start``.

        With ``seconds == 0`` outside working hours, the answer is ``start`` itself.
        Raises ValueError when the calendar has no working time in the next three years.
        """
        start = _aware(start).astimezone(UTC)
        if seconds <= 0:
            return start
        remaining = float(seconds)
        day = self._local_day(start)
        last = day + timedelta(days=_MAX_DAYS)
        while day <= last:
            for w_start, w_end in self.windows(day, day):
                lo = max(w_start, start)
                if w_end <= lo:
                    continue
                available = (w_end - lo).total_seconds()
                if remaining <= available:
                    return lo + timedelta(seconds=remaining)
                remaining -= available
            day += timedelta(days=1)
        raise ValueError("the business calendar has no working time in the next three years")


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the business calendar")
    return value
