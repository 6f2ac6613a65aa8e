"""Store functions shared by several stages and commands. Each takes the session;
the caller owns the transaction."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.pipeline.rules import RuleSet
from bot.store.models import Assignment, Classification, Expert, Item, Team


async def sync_experts(session: AsyncSession, rules: RuleSet, default_timezone: str = "Europe/Paris") -> None:
    """Make the experts and teams tables match the rules file (at start and at each reload).

    The file wins for what it says: an expert's name, language, time zone (the brand's,
    ``RELAIS_TIMEZONE``, when the file gives none), skills and team (the first team
    that lists them); a team's lead. The database keeps what the file does not say:
    ``experts.available`` (set from the UI), and the rows of experts and teams no
    longer in the file (kept for history: rules cannot assign them any more, a person
    still can from the triage UI)."""
    teams = {t.name: t for t in (await session.scalars(select(Team))).all()}
    for spec in rules.teams.values():
        team = teams.get(spec.name) or Team(name=spec.name)
        team.lead_email = spec.lead
        session.add(team)
        teams[spec.name] = team
    await session.flush()
    team_of: dict[str, int] = {}
    for spec in rules.teams.values():
        for email in spec.members:
            team_of.setdefault(email, teams[spec.name].id)
    existing = {e.email: e for e in (await session.scalars(select(Expert))).all()}
    for spec in rules.experts.values():
        expert = existing.get(spec.email) or Expert(email=spec.email)
        expert.name = spec.name
        expert.language = spec.language
        expert.timezone = spec.timezone or default_timezone
        expert.skills = list(spec.skills)
        expert.team_id = team_of.get(spec.email)
        session.add(expert)


async def latest_classification(session: AsyncSession, item_id: int) -> Classification | None:
    return await session.scalar(
        select(Classification)
        .where(Classification.item_id == item_id)
        .order_by(Classification.id.desc())
        .limit(1)
    )


async def latest_classifications(session: AsyncSession, item_ids: list[int]) -> dict[int, Classification]:
    """:func:`latest_classification` of many items, in one query (items without one are absent)."""
    latest: dict[int, Classification] = {}
    if item_ids:
        rows = await session.scalars(
            select(Classification).where(Classification.item_id.in_(item_ids)).order_by(Classification.id)
        )
        for row in rows.all():
            latest[row.item_id] = row
    return latest


async def latest_assignment(session: AsyncSession, item_id: int) -> Assignment | None:
    return await session.scalar(
        select(Assignment).where(Assignment.item_id == item_id).order_by(Assignment.id.desc()).limit(1)
    )


async def item_by_external_id(session: AsyncSession, platform: str, external_id: str) -> Item | None:
    return await session.scalar(
        select(Item).where(Item.platform == platform, Item.external_id == external_id)
    )
