"""Store functions shared by several stages and commands. Each takes the session;
the caller owns the transaction."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.pipeline.rules import RuleSet
from bot.store.models import Assignment, Classification, Expert, Item


async def sync_experts(session: AsyncSession, rules: RuleSet, default_timezone: str = "Europe/Paris") -> None:
    """Make the experts table match the rules file (the file wins for the experts it names).

    An expert without a time zone in the file gets the brand's (``RELAIS_TIMEZONE``)."""
    existing = {e.email: e for e in (await session.scalars(select(Expert))).all()}
    for spec in rules.experts.values():
        expert = existing.get(spec.email) or Expert(email=spec.email)
        expert.name = spec.name
        expert.language = spec.language
        expert.timezone = spec.timezone or default_timezone
        expert.skills = list(spec.skills)
        session.add(expert)


async def latest_classification(session: AsyncSession, item_id: int) -> Classification | None:
    return await session.scalar(
        select(Classification)
        .where(Classification.item_id == item_id)
        .order_by(Classification.id.desc())
        .limit(1)
    )


async def latest_assignment(session: AsyncSession, item_id: int) -> Assignment | None:
    return await session.scalar(
        select(Assignment).where(Assignment.item_id == item_id).order_by(Assignment.id.desc()).limit(1)
    )


async def item_by_external_id(session: AsyncSession, platform: str, external_id: str) -> Item | None:
    return await session.scalar(
        select(Item).where(Item.platform == platform, Item.external_id == external_id)
    )
