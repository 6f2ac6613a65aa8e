"""Who, among people, gets an item once a rule has matched: availability, backups, teams.

A rule names an expert or a team (``routing_rules.yaml``). An expert is
*unavailable* when the file says ``away: true``, when today (in their time zone)
falls within their ``out_of_office`` dates, when the database says
``available = false``, or when they already hold ``cap`` open items (their
items still ``routed`` or ``notified``). Then:

- a rule that names an expert goes to that expert's ``backup`` if available,
  else to triage;
- a rule that names a team picks an available member by the team's strategy
  (``round_robin``: the member assigned least recently; ``least_loaded``: the
  fewest open items; ``skills``: the most words shared with the rule's
  ``skills``, then the fewest open items), ties going to the first listed;
  with no member available, the team's ``backup`` if available, else triage.

:func:`pick` returns the expert row (None: triage) and trace lines saying who and why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.pipeline.rules import ExpertSpec, Rule, RuleSet, TeamSpec
from bot.store.models import Assignment, Expert, Item

OPEN = ("routed", "notified")


async def open_items(session: AsyncSession, expert_ids: Iterable[int]) -> dict[int, int]:
    """Open items per expert: items still routed or notified whose latest assignment is theirs."""
    ids = list(expert_ids)
    if not ids:
        return {}
    latest = select(func.max(Assignment.id)).group_by(Assignment.item_id).scalar_subquery()
    rows = await session.execute(
        select(Assignment.expert_id, func.count())
        .join(Item, Item.id == Assignment.item_id)
        .where(Assignment.id.in_(latest), Item.status.in_(OPEN), Assignment.expert_id.in_(ids))
        .group_by(Assignment.expert_id)
    )
    return {expert_id: count for expert_id, count in rows.all()}


async def last_assigned(session: AsyncSession, expert_ids: Iterable[int]) -> dict[int, int]:
    """The id of each expert's latest assignment (a larger id is a more recent one)."""
    ids = list(expert_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(Assignment.expert_id, func.max(Assignment.id)).where(Assignment.expert_id.in_(ids)).group_by(Assignment.expert_id)
    )
    return {expert_id: last for expert_id, last in rows.all()}


def unavailable(spec: ExpertSpec, row: Expert, open_count: int, now: datetime, default_zone: str) -> str | None:
    """Why ``spec`` cannot take an item now, or None."""
    if spec.away:
        return "away"
    if not row.available:
        return "not available"
    if spec.out_of_office is not None:
        start, end = spec.out_of_office
        today = now.astimezone(ZoneInfo(spec.timezone or row.timezone or default_zone)).date()
        if start <= today <= end:
            return f"out of office until {end.isoformat()}"
    if spec.cap is not None and open_count >= spec.cap:
        return f"at cap ({open_count}/{spec.cap} open)"
    return None


async def _rows(session: AsyncSession, emails: Iterable[str]) -> dict[str, Expert]:
    wanted = list(dict.fromkeys(emails))
    found = (await session.scalars(select(Expert).where(Expert.email.in_(wanted)))).all() if wanted else []
    return {e.email: e for e in found}


@dataclass
class TeamState:
    """What picking needs from the database (the experts' rows, open items, latest
    assignments), read once for a batch of items and kept up to date in memory as the
    batch assigns them (:meth:`assigned`)."""

    rows: dict[str, Expert]
    loads: dict[int, int]
    last: dict[int, int]
    _clock: int = 0

    @classmethod
    async def load(cls, session: AsyncSession, emails: Iterable[str]) -> TeamState:
        rows = await _rows(session, emails)
        ids = [r.id for r in rows.values()]
        last = await last_assigned(session, ids)
        return cls(rows, await open_items(session, ids), last, max(last.values(), default=0))

    def assigned(self, expert: Expert) -> None:
        """``expert`` got an item of this batch: one more open item, assigned most recently."""
        self.loads[expert.id] = self.loads.get(expert.id, 0) + 1
        self._clock += 1
        self.last[expert.id] = self._clock


def people_of(rules: RuleSet, rule: Rule) -> list[str]:
    """The emails :func:`pick` may look at for ``rule``."""
    if rule.team is not None:
        team = rules.teams[rule.team]
        return [*team.members, *([team.backup] if team.backup else [])]
    if rule.expert_email is None:
        return []
    spec = rules.experts[rule.expert_email]
    return [spec.email] + ([spec.backup] if spec.backup else [])


async def pick(session: AsyncSession, rules: RuleSet, rule: Rule, now: datetime, default_zone: str = "Europe/Paris") -> tuple[Expert | None, list[str]]:
    """The expert who gets an item matched by ``rule`` (None: triage), and why."""
    state = await TeamState.load(session, people_of(rules, rule))
    return choose(state, rules, rule, now, default_zone)


def choose(state: TeamState, rules: RuleSet, rule: Rule, now: datetime, default_zone: str = "Europe/Paris") -> tuple[Expert | None, list[str]]:
    """:func:`pick` on a :class:`TeamState` (which must hold everyone :func:`people_of` names)."""
    if rule.team is not None:
        return _pick_member(state, rules, rules.teams[rule.team], rule, now, default_zone)
    if rule.expert_email is None:
        return None, []
    spec = rules.experts[rule.expert_email]
    rows, loads = state.rows, state.loads
    row = rows.get(spec.email)
    if row is None:
        return None, [f"{spec.email}: not in the experts table: triage"]
    why = unavailable(spec, row, loads.get(row.id, 0), now, default_zone)
    if why is None:
        return row, []
    trace = [f"{spec.email}: {why}"]
    backup = rows.get(spec.backup) if spec.backup else None
    if backup is not None and spec.backup is not None:
        backup_why = unavailable(rules.experts[spec.backup], backup, loads.get(backup.id, 0), now, default_zone)
        if backup_why is None:
            return backup, [*trace, f"backup {backup.email}: assigned"]
        trace.append(f"backup {backup.email}: {backup_why}")
    return None, [*trace, "nobody available: triage"]


def _pick_member(
    state: TeamState, rules: RuleSet, team: TeamSpec, rule: Rule, now: datetime, default_zone: str
) -> tuple[Expert | None, list[str]]:
    rows, loads = state.rows, state.loads
    trace: list[str] = []
    candidates: list[tuple[int, Expert]] = []  # (position in the team, row)
    for position, email in enumerate(team.members):
        row = rows.get(email)
        if row is None:
            trace.append(f"team {team.name}: {email} not in the experts table")
            continue
        why = unavailable(rules.experts[email], row, loads.get(row.id, 0), now, default_zone)
        if why is not None:
            trace.append(f"team {team.name}: {email} skipped ({why})")
        else:
            candidates.append((position, row))
    if candidates:
        if team.strategy == "round_robin":
            last = state.last
            position, chosen = min(candidates, key=lambda c: (last.get(c[1].id, 0), c[0]))
            seen = last.get(chosen.id)
            reason = "round robin: never assigned yet" if seen is None else "round robin: assigned least recently"
        elif team.strategy == "least_loaded":
            position, chosen = min(candidates, key=lambda c: (loads.get(c[1].id, 0), c[0]))
            reason = f"least loaded: {loads.get(chosen.id, 0)} open items"
        else:
            wanted = {w.casefold() for w in rule.skills}

            def shared(row: Expert) -> int:
                return len(wanted & {w.casefold() for w in rules.experts[row.email].skills})

            position, chosen = min(candidates, key=lambda c: (-shared(c[1]), loads.get(c[1].id, 0), c[0]))
            reason = f"skills: {shared(chosen)} of {len(wanted)} wanted ({', '.join(sorted(wanted)) or 'none'}), {loads.get(chosen.id, 0)} open items"
        return chosen, [*trace, f"team {team.name}: {chosen.email} ({reason})"]
    if team.backup is not None and (backup := rows.get(team.backup)) is not None:
        why = unavailable(rules.experts[team.backup], backup, loads.get(backup.id, 0), now, default_zone)
        if why is None:
            return backup, [*trace, f"team {team.name}: nobody available, backup {backup.email}"]
        trace.append(f"team {team.name}: backup {backup.email} {why}")
    return None, [*trace, f"team {team.name}: nobody available: triage"]
