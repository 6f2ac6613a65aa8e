"""The weekly digest's schedule: ``"MON 08:00"`` in the brand's time zone.

The digest of ISO week W is due at the first scheduled instant after W ends
(with ``MON 08:00``, on the Monday of week W+1 at 08:00 local time).
:func:`weeks_due` lists the weeks whose digest is due and not yet sent, so a
server that was stopped over the scheduled time catches up at its next start
(no week skipped), and the unique ``digest_runs.week`` keeps each one single.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
#: a server stopped longer than this does not send the older digests any more
CATCH_UP_WEEKS = 8
_FORM = re.compile(r"^\s*([A-Za-z]{3})\s+(\d{1,2}):(\d{2})\s*$")


def parse_schedule(text: str) -> tuple[int, time]:
    """``"MON 08:00"`` -> (0, 08:00). Raises ValueError with the expected form."""
    match = _FORM.match(text)
    if not match or match[1].upper() not in DAYS or int(match[2]) > 23 or int(match[3]) > 59:
        raise ValueError(f"schedule {text!r}: expected a day and a time such as \"MON 08:00\"")
    return DAYS.index(match[1].upper()), time(int(match[2]), int(match[3]))


def week_bounds(week: str, timezone: str) -> tuple[datetime, datetime]:
    """``"2026-W47"`` -> its Monday 00:00 and the next Monday 00:00, local time, as UTC instants."""
    match = re.fullmatch(r"(\d{4})-W(\d{2})", week.strip())
    if not match:
        raise ValueError(f"week {week!r}: expected an ISO week such as 2026-W47")
    try:
        monday = date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError:
        raise ValueError(f"week {week!r} does not exist") from None
    zone = ZoneInfo(timezone)
    start = datetime.combine(monday, time(0), tzinfo=zone)
    end = datetime.combine(monday + timedelta(days=7), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def week_of(day: date) -> str:
    year, number, _ = day.isocalendar()
    return f"{year}-W{number:02d}"


def previous_week(week: str) -> str:
    year, number = int(week[:4]), int(week[6:])
    return week_of(date.fromisocalendar(year, number, 1) - timedelta(days=7))


def due_at(week: str, schedule: str, timezone: str) -> datetime:
    """When the digest of ``week`` is due (UTC)."""
    weekday, at = parse_schedule(schedule)
    year, number = int(week[:4]), int(week[6:])
    next_monday = date.fromisocalendar(year, number, 1) + timedelta(days=7)
    local = datetime.combine(next_monday + timedelta(days=weekday), at, tzinfo=ZoneInfo(timezone))
    return local.astimezone(UTC)


def weeks_due(now: datetime, schedule: str, timezone: str, last_sent: str | None) -> list[str]:
    """Weeks whose digest is due at ``now`` and newer than ``last_sent``, oldest first."""
    local_today = now.astimezone(ZoneInfo(timezone)).date()
    week = week_of(local_today)
    due: list[str] = []
    for _ in range(CATCH_UP_WEEKS + 2):
        if due_at(week, schedule, timezone) <= now:
            if last_sent is not None and week <= last_sent:
                break
            due.append(week)
            if last_sent is None:  # a new installation sends only the latest week
                break
            if len(due) >= CATCH_UP_WEEKS:
                break
        week = previous_week(week)
    return sorted(due)
