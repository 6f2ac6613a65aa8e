"""KPI events: one row per measured fact, written by the stage where it happens.

Names (seconds unless said otherwise; docs/architecture.md, "KPI events", defines each):

- ``ingest_lag_s``        platform ``created_time`` -> received by Relais
- ``time_to_assignment_s``  platform ``created_time`` -> routed to an expert
- ``first_response_s``    platform ``created_time`` -> first reply sent (public or private)
- ``public_ack_s``        platform ``created_time`` -> first public reply or acknowledgement
- ``expert_response_s``   notification email queued -> the expert's reply sent
- ``private_resolution_s``  platform ``created_time`` -> first private reply sent
- ``resolution_s``        platform ``created_time`` -> ``items.resolved_at`` (marked resolved)

The last two are derived from the base tables by :func:`bot.kpi.report.refresh`;
``kpi_events.business_seconds`` (the same span in working time) is filled there
too, once per event. docs/kpis.md defines every KPI.

An event is recorded at most once per item and name (a retried stage records nothing twice).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.db import dialect_insert
from bot.store.models import Item, KpiEvent

INGEST_LAG = "ingest_lag_s"
TIME_TO_ASSIGNMENT = "time_to_assignment_s"
FIRST_RESPONSE = "first_response_s"
PUBLIC_ACK = "public_ack_s"
EXPERT_RESPONSE = "expert_response_s"
PRIVATE_RESOLUTION = "private_resolution_s"
RESOLUTION = "resolution_s"


def elapsed(start: datetime, end: datetime) -> float:
    """Seconds from ``start`` to ``end`` (never negative: clocks disagree a little)."""
    return max(0.0, (end - start).total_seconds())


def row(
    name: str, item_id: int, channel_id: int | None, seconds: float, at: datetime, *, expert_id: int | None = None
) -> dict[str, Any]:
    """One ``kpi_events`` row, for :func:`record_many`."""
    return {"name": name, "item_id": item_id, "expert_id": expert_id, "channel_id": channel_id,
            "seconds": seconds, "at": at, "detail": {}}


async def record_many(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Store many events (:func:`row`) as multi-row INSERTs of one compiled statement, each
    unless its item already has one of that name."""
    if rows:
        events = KpiEvent.__table__
        await session.execute(dialect_insert(session)(events).on_conflict_do_nothing(index_elements=["name", "item_id"]), rows)


async def record(
    session: AsyncSession,
    name: str,
    item: Item,
    seconds: float,
    at: datetime,
    *,
    expert_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> bool:
    """Store one KPI event unless the item already has one of that name."""
    stmt = (
        dialect_insert(session)(KpiEvent)
        .values(
            name=name,
            item_id=item.id,
            expert_id=expert_id,
            channel_id=item.channel_id,
            seconds=seconds,
            at=at,
            detail=detail or {},
        )
        .on_conflict_do_nothing(index_elements=["name", "item_id"])
        .returning(KpiEvent.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None
