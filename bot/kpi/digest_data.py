"""The figures of a weekly digest, gathered in SQL (bot.kpi.report plus a few lists)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from bot.kpi import events
from bot.kpi.calendar import BusinessCalendar
from bot.kpi.report import compute_kpis
from bot.kpi.schedule import previous_week, week_bounds
from bot.store.models import Assignment, Classification, Expert, Item, KpiEvent, Response

#: first-response buckets of the distribution chart, upper bounds in seconds
BUCKETS = ((900, "< 15 min"), (3600, "15-60 min"), (4 * 3600, "1-4 h"), (24 * 3600, "4-24 h"), (None, "> 24 h"))
LIST_LIMIT = 30


@dataclass(frozen=True)
class ListedItem:
    id: int
    created_time: datetime
    platform: str
    author: str
    text: str
    expert: str | None
    first_sent: datetime | None
    sla_due: datetime | None
    permalink: str | None


@dataclass
class DigestData:
    week: str
    start: datetime
    end: datetime
    as_of: datetime
    current: dict[str, Any]
    previous: dict[str, Any]
    by_category: list[dict[str, Any]]
    by_expert: list[dict[str, Any]]
    by_team: list[dict[str, Any]]
    distribution: list[tuple[str, int]]
    breaches: list[ListedItem]
    unanswered_public: list[ListedItem]
    expert_names: dict[str, str] = field(default_factory=dict)


def _latest(model: Any, column: str) -> Any:
    """The latest row's ``column`` of ``model`` for the outer query's item (a correlated subquery)."""
    alias = aliased(model)
    return (select(getattr(alias, column)).where(alias.item_id == Item.id).order_by(alias.id.desc()).limit(1)
            .correlate(Item).scalar_subquery())


async def gather(session: AsyncSession, week: str, timezone: str, calendar: BusinessCalendar, as_of: datetime) -> DigestData:
    start, end = week_bounds(week, timezone)
    p_start, p_end = week_bounds(previous_week(week), timezone)
    current = await compute_kpis(session, start, end, calendar=calendar, as_of=as_of)
    previous = await compute_kpis(session, p_start, p_end, calendar=calendar, as_of=as_of)
    by_category = await compute_kpis(session, start, end, by="category", calendar=calendar, as_of=as_of)
    by_expert = await compute_kpis(session, start, end, by="expert", calendar=calendar, as_of=as_of)
    by_team = await compute_kpis(session, start, end, by="team", calendar=calendar, as_of=as_of)
    assert isinstance(current, dict) and isinstance(previous, dict)
    assert isinstance(by_category, list) and isinstance(by_expert, list) and isinstance(by_team, list)

    in_week = and_(Item.created_time >= start, Item.created_time < end, Item.is_brand_post.is_(False))
    seconds = KpiEvent.seconds
    bucket = case(*[(seconds < limit, i) for i, (limit, _) in enumerate(BUCKETS) if limit is not None],
                  else_=len(BUCKETS) - 1)
    rows = (await session.execute(
        select(bucket, func.count()).join(Item, Item.id == KpiEvent.item_id)
        .where(in_week, KpiEvent.name == events.FIRST_RESPONSE).group_by(bucket)
    )).all()
    counts = {int(b): int(n) for b, n in rows}
    distribution = [(label, counts.get(i, 0)) for i, (_, label) in enumerate(BUCKETS)]

    first_sent = (select(func.min(Response.sent_at)).where(Response.item_id == Item.id, Response.status == "sent")
                  .correlate(Item).scalar_subquery())
    assignment_id = _latest(Assignment, "id")
    base = (
        select(Item, Expert.email, first_sent.label("first_sent"), Assignment.sla_due)
        .select_from(Item)
        .join(Assignment, Assignment.id == assignment_id)
        .outerjoin(Expert, Expert.id == Assignment.expert_id)
    )
    breach_rows = (await session.execute(
        base.where(in_week, Assignment.expert_id.is_not(None), or_(
            and_(first_sent.is_not(None), first_sent > Assignment.sla_due),
            and_(first_sent.is_(None), Assignment.sla_due < as_of, Item.status != "removed", Item.is_spam.is_(False)),
        )).order_by(Item.created_time).limit(LIST_LIMIT)
    )).all()
    label = _latest(Classification, "label")
    unanswered_rows = (await session.execute(
        select(Item, Expert.email, first_sent.label("first_sent"), Assignment.sla_due)
        .select_from(Item)
        .outerjoin(Assignment, Assignment.id == assignment_id)
        .outerjoin(Expert, Expert.id == Assignment.expert_id)
        .where(in_week, label == "complaint", Item.kind != "message", first_sent.is_(None),
               Item.created_time < as_of - timedelta(hours=24), Item.status != "removed", Item.is_spam.is_(False))
        .order_by(Item.created_time).limit(LIST_LIMIT)
    )).all()
    names = {e.email: e.name for e in (await session.scalars(select(Expert))).all()}
    return DigestData(
        week=week, start=start, end=end, as_of=as_of, current=current, previous=previous,
        by_category=by_category, by_expert=by_expert, by_team=by_team, distribution=distribution,
        breaches=[_listed(*row) for row in breach_rows],
        unanswered_public=[_listed(*row) for row in unanswered_rows],
        expert_names=names,
    )


def _listed(item: Item, expert: str | None, first: Any, sla_due: datetime | None) -> ListedItem:
    if isinstance(first, str):  # SQLite returns the aggregate as text
        first = datetime.fromisoformat(first).replace(tzinfo=item.created_time.tzinfo)
    return ListedItem(
        id=item.id, created_time=item.created_time, platform=item.platform,
        author=item.author_name or item.author_handle or item.author_id, text=item.text, expert=expert,
        first_sent=first, sla_due=sla_due, permalink=item.permalink,
    )
