"""The triage queue: what needs a person now, first.

Plain query functions; each takes the session (the caller owns the transaction).
An item's latest classification, latest assignment and latest reply count. Its
*attention* reasons, most urgent first:

    breached      open, and its first-response deadline (``sla_due``) has passed
    error         its latest reply failed or is in doubt, or its channel's token is dead
    at_risk       open, and the deadline is less than ``risk_window`` away
    needs_review  the model was unsure (status ``needs_review``, or a model label under
                  its review threshold that no person has confirmed)
    unassigned    open with no expert: the default rule sent it to triage, or not routed yet

The queue is ordered by the most urgent reason, then by deadline, then by age.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, case, false, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from bot.pipeline.classify import REVIEW_THRESHOLDS
from bot.store.models import Assignment, Channel, Classification, Expert, Item, Response, utcnow

#: an item in one of these states is finished: it leaves the default ("open") queue
CLOSED = ("answered", "resolved", "removed", "brand", "imported")
OPEN = ("new", "classified", "needs_review", "triage", "routed", "notified")
REASONS = ("breached", "error", "at_risk", "needs_review", "unassigned")
SORTS = ("attention", "sla", "newest", "oldest")
DEFAULT_RISK_WINDOW = timedelta(hours=1)
UNASSIGNED = -1  # QueueFilters.assignee value for "nobody"


@dataclass(frozen=True)
class QueueFilters:
    """What the queue shows. ``status``: "open" (default), "all", "spam", or an item status."""

    platform: str | None = None
    channel_id: int | None = None
    category: str | None = None
    language: str | None = None
    status: str = "open"
    assignee: int | None = None  # an expert id, or UNASSIGNED
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None
    reason: str | None = None  # one of REASONS: only items with it
    sort: str = "attention"


@dataclass(frozen=True)
class QueueRow:
    id: int
    platform: str
    channel_name: str | None
    kind: str
    author_name: str
    text: str
    language: str | None
    status: str
    created_time: datetime
    label: str | None
    confidence: float | None
    label_source: str | None
    expert_id: int | None
    expert_name: str | None
    rule_name: str | None
    sla_due: datetime | None
    priority: str | None
    is_hidden: bool
    is_spam: bool
    in_crisis: bool
    reply_status: str | None
    reasons: tuple[str, ...] = field(default_factory=tuple)


def _latest(model: Any) -> Any:
    return select(model.item_id, func.max(model.id).label("latest")).group_by(model.item_id).subquery()


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class _Q:
    """The joined statement and the reason expressions, built once per call."""

    def __init__(self, now: datetime, risk_window: timedelta) -> None:
        label, assign, reply = _latest(Classification), _latest(Assignment), _latest(Response)
        self.columns = (Item, Classification, Assignment, Expert.name, Channel.name, Channel.status, Response.status)
        self.base = (
            select(*self.columns)
            .outerjoin(label, label.c.item_id == Item.id)
            .outerjoin(Classification, Classification.id == label.c.latest)
            .outerjoin(assign, assign.c.item_id == Item.id)
            .outerjoin(Assignment, Assignment.id == assign.c.latest)
            .outerjoin(Expert, Expert.id == Assignment.expert_id)
            .outerjoin(Channel, Channel.id == Item.channel_id)
            .outerjoin(reply, reply.c.item_id == Item.id)
            .outerjoin(Response, Response.id == reply.c.latest)
        )
        is_open = Item.status.in_(OPEN)
        threshold = case(
            *((Classification.label == name, literal(value)) for name, value in REVIEW_THRESHOLDS.items()),
            else_=literal(0.5),
        )
        self.reasons: dict[str, ColumnElement[bool]] = {
            "breached": and_(is_open, Assignment.sla_due.is_not(None), Assignment.sla_due < now),
            "error": or_(Response.status.in_(("failed", "in_doubt")), and_(is_open, Channel.status == "token_invalid")),
            "at_risk": and_(is_open, Assignment.sla_due >= now, Assignment.sla_due < now + risk_window),
            "needs_review": and_(
                is_open,
                or_(
                    Item.status == "needs_review",
                    and_(Classification.source == "model", Classification.confidence < threshold),
                ),
            ),
            "unassigned": and_(is_open, or_(Assignment.id.is_(None), Assignment.expert_id.is_(None))),
        }
        self.rank = case(
            *((expr, literal(i)) for i, expr in enumerate(self.reasons.values())), else_=literal(len(self.reasons))
        )


def _where(q: _Q, f: QueueFilters) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if f.status == "open":
        where += [Item.status.in_(OPEN), Item.is_spam.is_(False)]
    elif f.status == "spam":
        where.append(Item.is_spam.is_(True))
    elif f.status != "all":
        where += [Item.status == f.status, Item.is_spam.is_(False)]
    if f.status != "brand":
        where.append(Item.is_brand_post.is_(False))
    if f.platform:
        where.append(Item.platform == f.platform)
    if f.channel_id:
        where.append(Item.channel_id == f.channel_id)
    if f.category:
        where.append(Classification.label == f.category)
    if f.language:
        where.append(Item.language == f.language)
    if f.assignee == UNASSIGNED:
        where.append(or_(Assignment.id.is_(None), Assignment.expert_id.is_(None)))
    elif f.assignee is not None:
        where.append(Assignment.expert_id == f.assignee)
    if f.since:
        where.append(Item.created_time >= f.since)
    if f.until:
        where.append(Item.created_time < f.until)
    if f.search and f.search.strip():
        pattern = f"%{_like_escape(f.search.strip())}%"
        where.append(
            or_(
                Item.text.ilike(pattern, escape="\\"),
                Item.author_name.ilike(pattern, escape="\\"),
                Item.author_handle.ilike(pattern, escape="\\"),
            )
        )
    if f.reason in q.reasons:
        where.append(q.reasons[f.reason])
    elif f.reason:
        where.append(false())
    return where


def _ordered(q: _Q, stmt: Select[Any], sort: str) -> Select[Any]:
    due_last = case((Assignment.sla_due.is_(None), 1), else_=0)
    if sort == "sla":
        return stmt.order_by(due_last, Assignment.sla_due, Item.created_time, Item.id)
    if sort == "newest":
        return stmt.order_by(Item.created_time.desc(), Item.id.desc())
    if sort == "oldest":
        return stmt.order_by(Item.created_time, Item.id)
    return stmt.order_by(q.rank, due_last, Assignment.sla_due, Item.created_time, Item.id)


async def list_queue(
    session: AsyncSession,
    filters: QueueFilters = QueueFilters(),
    *,
    limit: int = 100,
    offset: int = 0,
    now: datetime | None = None,
    risk_window: timedelta = DEFAULT_RISK_WINDOW,
) -> list[QueueRow]:
    """The items that match ``filters``, most urgent first (or by ``filters.sort``)."""
    q = _Q(now or utcnow(), risk_window)
    flags = [expr.label(name) for name, expr in q.reasons.items()]
    stmt = _ordered(q, q.base.add_columns(*flags).where(*_where(q, filters)), filters.sort)
    rows = (await session.execute(stmt.limit(limit).offset(offset))).all()
    out = []
    for row in rows:
        item, label, assignment, expert_name, channel_name, _channel_status, reply_status = row[:7]
        reasons = tuple(name for name, flag in zip(q.reasons, row[7:], strict=True) if flag)
        out.append(
            QueueRow(
                id=item.id,
                platform=item.platform,
                channel_name=channel_name,
                kind=item.kind,
                author_name=item.author_name,
                text=item.text,
                language=item.language,
                status=item.status,
                created_time=item.created_time,
                label=label.label if label else None,
                confidence=label.confidence if label else None,
                label_source=label.source if label else None,
                expert_id=assignment.expert_id if assignment else None,
                expert_name=expert_name,
                rule_name=assignment.rule_name if assignment else None,
                sla_due=assignment.sla_due if assignment else None,
                priority=assignment.priority if assignment else None,
                is_hidden=item.is_hidden,
                is_spam=item.is_spam,
                in_crisis=item.in_crisis,
                reply_status=reply_status,
                reasons=reasons,
            )
        )
    return out


async def count_queue(
    session: AsyncSession,
    filters: QueueFilters = QueueFilters(),
    *,
    now: datetime | None = None,
    risk_window: timedelta = DEFAULT_RISK_WINDOW,
) -> dict[str, int]:
    """How many items match ``filters`` ("total"), and how many of them have each reason."""
    q = _Q(now or utcnow(), risk_window)
    sums = [func.coalesce(func.sum(case((expr, 1), else_=0)), 0).label(name) for name, expr in q.reasons.items()]
    joined = q.base.with_only_columns(func.count().label("total"), *sums).where(*_where(q, filters))
    row = (await session.execute(joined)).one()
    return {"total": int(row.total), **{name: int(getattr(row, name)) for name in q.reasons}}


#: tables whose new rows mean "this item changed", and the column naming the item
_CHANGE_SOURCES = ("items", "classifications", "assignments", "responses", "audit_log", "kpi_events", "emails")


async def changes(session: AsyncSession, cursor: dict[str, int] | None) -> tuple[list[int], dict[str, int]]:
    """Items that changed since ``cursor``, and the next cursor (None: start from now).

    A change is a new row in one of :data:`_CHANGE_SOURCES`: a new item, label, assignment,
    reply, audit entry, KPI event (a reply reached the platform) or email. Rows are found
    by primary key (``id > last seen``), an index range scan however large the tables are;
    this is the live view's fallback when several web processes or separate workers run.
    """
    from bot.store.models import AuditEntry, Email, KpiEvent

    tables: dict[str, tuple[Any, Any]] = {
        "items": (Item.id, Item.id),
        "classifications": (Classification.id, Classification.item_id),
        "assignments": (Assignment.id, Assignment.item_id),
        "responses": (Response.id, Response.item_id),
        "audit_log": (AuditEntry.id, AuditEntry.item_id),
        "kpi_events": (KpiEvent.id, KpiEvent.item_id),
        "emails": (Email.id, Email.item_id),
    }
    if cursor is None:
        start = {}
        for name, (pk, _item) in tables.items():
            start[name] = int(await session.scalar(select(func.coalesce(func.max(pk), 0))) or 0)
        return [], start
    ids: set[int] = set()
    after = dict(cursor)
    for name, (pk, item_id) in tables.items():
        rows = (await session.execute(select(pk, item_id).where(pk > cursor.get(name, 0)).order_by(pk).limit(1000))).all()
        for row_id, changed in rows:
            after[name] = max(after.get(name, 0), int(row_id))
            if changed is not None:
                ids.add(int(changed))
    return sorted(ids), after
