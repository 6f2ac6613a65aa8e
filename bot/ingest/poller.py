"""Polling: ask each channel what is new, store it, and remember where we stopped.

Facebook is polled to reconcile what webhooks missed; X mentions arrive only
this way. The scheduler enqueues one ``poll_channel`` job per channel per
interval (deduplicated, so several server processes poll once).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import select

from bot.errors import TokenInvalid
from bot.ingest.store_items import store_items
from bot.notify.alerts import mark_token_invalid
from bot.pipeline import queue
from bot.services import Services
from bot.store.models import Channel, utcnow

log = logging.getLogger(__name__)


async def poll_channel(services: Services, channel_id: int) -> int:
    """Fetch and store what is new on one channel. Returns how many items were new."""
    async with services.sessions() as session:
        row = await session.get(Channel, channel_id)
        if row is None or row.status != "active":
            return 0
        cursor = dict(row.cursor or {})
    adapter = await services.channels.get(row)
    try:
        fetched = await adapter.fetch_new(cursor)
    except TokenInvalid as exc:
        async with services.sessions.begin() as session:
            ch = await session.get(Channel, channel_id)
            assert ch is not None
            await mark_token_invalid(services, session, ch, str(exc))
        services.wake()
        services.announce("channel.token_invalid", {"channel_id": channel_id, "name": row.name})
        raise
    async with services.sessions.begin() as session:
        ch = await session.get(Channel, channel_id, with_for_update=True)
        assert ch is not None
        result = await store_items(session, ch, fetched.items, source="poll")
        ch.cursor = fetched.cursor
        ch.last_polled_at = utcnow()
    if result.new:
        services.wake()
        log.info("poll %s: %d new item(s)", row.name, len(result.new))
    return len(result.new)


async def schedule_polls(services: Services, stop: asyncio.Event, tick_s: float = 1.0) -> None:
    """Enqueue a poll for every active channel whose interval has passed, until ``stop``."""
    while not stop.is_set():
        try:
            now = utcnow()
            async with services.sessions.begin() as session:
                channels = (await session.scalars(select(Channel).where(Channel.status == "active"))).all()
                for ch in channels:
                    interval = max(1.0, ch.poll_interval_s)
                    if ch.last_polled_at and now - ch.last_polled_at < timedelta(seconds=interval):
                        continue
                    slot = int(now.timestamp() // interval)
                    await queue.enqueue(
                        session, "poll_channel", {"channel_id": ch.id}, dedupe_key=f"poll:{ch.id}:{slot}", max_attempts=3
                    )
            services.wake()
        except Exception:  # noqa: BLE001 - the scheduler must outlive a database hiccup
            log.exception("poll scheduler tick failed")
        try:
            await asyncio.wait_for(stop.wait(), tick_s)
        except TimeoutError:
            pass
