"""BusinessCalendar: weekends, holidays, lunch breaks and daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.kpi.calendar import BusinessCalendar

PARIS = BusinessCalendar.from_config("Europe/Paris")  # Monday-Friday 09:00-18:00
ALWAYS = BusinessCalendar.from_config("Europe/Paris", {d: "00:00-24:00" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_weekend_counts_nothing() -> None:
    # Friday 17:00 CEST -> Monday 10:00 CET (the clocks went back on Sunday 25 October 2026)
    assert PARIS.business_seconds_between(utc(2026, 10, 23, 15), utc(2026, 10, 26, 9)) == 2 * 3600
    assert PARIS.business_seconds_between(utc(2026, 10, 24, 8), utc(2026, 10, 25, 20)) == 0


def test_the_autumn_change_gives_a_25_hour_day_and_the_spring_one_a_23_hour_day() -> None:
    assert ALWAYS.business_seconds_between(utc(2026, 10, 24, 22), utc(2026, 10, 25, 23)) == 25 * 3600
    assert ALWAYS.business_seconds_between(utc(2026, 3, 28, 23), utc(2026, 3, 29, 22)) == 23 * 3600
    # a 09:00-18:00 day keeps its 9 hours on either side of a change
    assert PARIS.business_seconds_between(utc(2026, 10, 23, 0), utc(2026, 10, 24, 0)) == 9 * 3600  # CEST: 07:00Z-16:00Z
    assert PARIS.business_seconds_between(utc(2026, 10, 26, 0), utc(2026, 10, 27, 0)) == 9 * 3600  # CET: 08:00Z-17:00Z


def test_holidays_and_split_days() -> None:
    cal = BusinessCalendar.from_config(
        "America/Montreal", {"mon": ["09:00-12:00", "13:00-17:00"], "tue": ["09:00-12:00", "13:00-17:00"]},
        holidays=["2026-11-10"],
    )
    # Monday 9 November 2026, 11:00 -> Wednesday 09:00 local (EST = UTC-5); Tuesday is a holiday
    assert cal.business_seconds_between(utc(2026, 11, 9, 16), utc(2026, 11, 11, 14)) == 3600 + 4 * 3600
    assert cal.is_working_day(date(2026, 11, 9)) and not cal.is_working_day(date(2026, 11, 10))
    # 2 h of work from Monday 11:00: 11-12, then 13-14
    assert cal.add_business_seconds(utc(2026, 11, 9, 16), 7200) == utc(2026, 11, 9, 19)
    # from Monday 16:30, 1 h: 30 min on Monday, the holiday skipped, 30 min on Monday 16 November
    assert cal.add_business_seconds(utc(2026, 11, 9, 21, 30), 3600) == utc(2026, 11, 16, 14, 30)


def test_add_business_seconds_across_the_change() -> None:
    # Friday 23 October 17:00 CEST + 2 working hours = Monday 26 October 10:00 CET (09:00Z)
    assert PARIS.add_business_seconds(utc(2026, 10, 23, 15), 7200) == utc(2026, 10, 26, 9)
    assert PARIS.add_business_seconds(utc(2026, 10, 24, 12), 0) == utc(2026, 10, 24, 12)


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        BusinessCalendar.from_config("Europe/Paris", {"mon": "9h-18h"})
    with pytest.raises(ValueError, match="unknown day"):
        BusinessCalendar.from_config("Europe/Paris", {"lundi": "09:00-18:00"})
    with pytest.raises(ValueError, match="overlap"):
        BusinessCalendar.from_config("Europe/Paris", {"mon": ["09:00-13:00", "12:00-18:00"]})
    with pytest.raises(ValueError, match="no working time"):
        BusinessCalendar.from_config("Europe/Paris", {}).add_business_seconds(utc(2026, 1, 1), 60)


@settings(max_examples=150, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)),
    hours=st.floats(min_value=0, max_value=200),
)
def test_add_is_the_inverse_of_between(start: datetime, hours: float) -> None:
    a = start.replace(tzinfo=UTC)
    b = PARIS.add_business_seconds(a, hours * 3600)
    assert PARIS.business_seconds_between(a, b) == pytest.approx(hours * 3600, abs=1e-3)
    if hours > 0:  # b is the earliest such instant: a second before it, the work is not done
        assert PARIS.business_seconds_between(a, b - timedelta(seconds=1)) < hours * 3600
