"""The first-response clock of an assignment: when it is due, and when to remind.

A rule's ``sla`` counts calendar time by default. With ``business_hours: true``
it counts only the working hours of whoever holds the item, through
:class:`bot.kpi.calendar.BusinessCalendar`:

1. the assigned expert's ``working_hours``, in their time zone;
2. else, for a rule that assigns a team, the team's ``working_hours`` in the team's
   time zone;
3. else Monday to Friday, 09:00-18:00 (the calendar's default), in the expert's
   (else the team's, else ``RELAIS_TIMEZONE``) time zone.

The clock starts at the platform's post time: a comment posted on Saturday with a
4-hour business target is due on Monday at 13:00.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.kpi.calendar import BusinessCalendar
from bot.pipeline.rules_schema import RuleSet, WorkingHours


def _table(hours: WorkingHours) -> dict[int, tuple[tuple[int, int], ...]]:
    window = (hours.start.hour * 60 + hours.start.minute, hours.end.hour * 60 + hours.end.minute)
    return {day: (window,) for day in hours.days}


def calendar_for(rules: RuleSet, expert_email: str | None, team: str | None, default_zone: str) -> BusinessCalendar:
    """The working calendar of the expert (or team) who holds an item (see the module doc)."""
    expert = rules.experts.get(expert_email) if expert_email else None
    team_spec = rules.teams.get(team) if team else None
    zone = (expert.timezone if expert else None) or (team_spec.timezone if team_spec else None) or default_zone
    if expert is not None and expert.working_hours is not None:
        return BusinessCalendar(timezone=zone, hours=_table(expert.working_hours))
    if team_spec is not None and team_spec.working_hours is not None:
        return BusinessCalendar(timezone=team_spec.timezone or zone, hours=_table(team_spec.working_hours))
    return BusinessCalendar(timezone=zone)


def due_time(created: datetime, seconds: int, calendar: BusinessCalendar | None) -> datetime:
    """``seconds`` after ``created``: calendar time, or working time when a calendar is given."""
    if calendar is None:
        return created + timedelta(seconds=seconds)
    return calendar.add_business_seconds(created, seconds)


def step_time(created: datetime, due: datetime, fraction: float, calendar: BusinessCalendar | None) -> datetime:
    """When ``fraction`` of the target between ``created`` and ``due`` has passed."""
    if calendar is None:
        return created + (due - created) * fraction
    target = calendar.business_seconds_between(created, due)
    return calendar.add_business_seconds(created, target * fraction)
