"""Retention: erase item text and author data after a number of days, per channel.

A channel's ``retention_days`` (``relais channels retention``) wins; otherwise
``RELAIS_RETENTION_DAYS``; with neither, items are kept. Age is counted from the
platform's time (``created_time``). KPI events are kept: they hold durations and
ids, no text. Raw webhook deliveries, only needed until read, are deleted once
read and older than the shortest retention in force.

The ``retention`` job runs once a day (the poll scheduler queues it, see
:func:`schedule_retention`); ``relais privacy retention`` runs it at once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from bot.pipeline import queue
from bot.privacy.erase import erase_items
from bot.services import Services
from bot.store.models import Channel, Delivery, Item, utcnow

log = logging.getLogger(__name__)

BATCH = 1_000


async def schedule_retention(session: AsyncSession, now: datetime) -> None:
    """Queue today's retention job (once a day, whichever process gets there first)."""
    await queue.enqueue(session, "retention", {}, dedupe_key=f"retention:{now:%Y%m%d}", max_attempts=3)


async def apply_retention(services: Services, now: datetime | None = None) -> dict[str, int]:
    """Erase what is older than its channel's retention; returns counts of items and deliveries."""
    now = now or utcnow()
    default = services.settings.retention_days
    async with services.sessions() as session:
        channels = (await session.execute(select(Channel.id, Channel.retention_days))).all()
    policies: list[tuple[ColumnElement[bool], int]] = []  # (which items, days)
    with_own = [cid for cid, days in channels if days]
    for cid, days in channels:
        if days:
            policies.append((Item.channel_id == cid, days))
    if default:
        policies.append((or_(Item.channel_id.is_(None), Item.channel_id.not_in(with_own)) if with_own
                         else true(), default))
    erased = 0
    for where, days in policies:
        cutoff = now - timedelta(days=days)
        while True:
            async with services.sessions.begin() as session:
                ids = list((await session.scalars(
                    select(Item.id).where(where, Item.created_time < cutoff, Item.erased_at.is_(None))
                    .order_by(Item.id).limit(BATCH)
                )).all())
                erased += await erase_items(session, ids, now=now)
            if len(ids) < BATCH:
                break
    deliveries = 0
    shortest = min([days for _, days in policies], default=None)
    if shortest is not None:
        async with services.sessions.begin() as session:
            result = await session.execute(delete(Delivery).where(
                Delivery.processed_at.is_not(None), Delivery.received_at < now - timedelta(days=shortest)
            ))
            deliveries = result.rowcount or 0
    if erased or deliveries:
        log.info("retention: %d item(s) erased, %d read webhook deliveries deleted", erased, deliveries)
    return {"items": erased, "deliveries": deliveries}


async def retention_job(services: Services) -> None:
    """The daily ``retention`` job."""
    await apply_retention(services)
