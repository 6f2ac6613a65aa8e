"""Polling: ask each channel what is new, store it, and remember where we stopped.

Facebook is polled to reconcile what webhooks missed; X mentions arrive only
this way. The scheduler enqueues one ``poll_channel`` job per channel per
interval (deduplicated, so several server processes poll once), and one
``token_check`` job per Facebook Page and Instagram account per day.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from bot.errors import TokenInvalid
from bot.ingest.store_items import store_items
from bot.kpi.jobs import schedule_kpi_jobs
from bot.notify.alerts import alert_community_manager, mark_token_invalid
from bot.notify.compose import one_line
from bot.pipeline import queue
from bot.privacy.retention import schedule_retention
from bot.services import Services
from bot.store.models import Channel, utcnow

log = logging.getLogger(__name__)

#: warn the community manager when a token expires within this long
TOKEN_EXPIRY_WARNING = timedelta(days=7)
#: platforms whose tokens the daily check inspects (``check_token`` on their adapter)
TOKEN_CHECK_PLATFORMS = ("facebook", "instagram")


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
                    if ch.platform in TOKEN_CHECK_PLATFORMS:
                        await queue.enqueue(session, "token_check", {"channel_id": ch.id},
                                            dedupe_key=f"token_check:{ch.id}:{now:%Y%m%d}", max_attempts=3)
                    slot = int(now.timestamp() // interval)
                    await queue.enqueue(
                        session, "poll_channel", {"channel_id": ch.id}, dedupe_key=f"poll:{ch.id}:{slot}", max_attempts=3
                    )
                await schedule_kpi_jobs(services, session, now)
                await schedule_retention(session, now)  # bot.privacy.retention, once a day
            services.wake()
        except Exception:  # noqa: BLE001 - the scheduler must outlive a database hiccup
            log.exception("poll scheduler tick failed")
        try:
            await asyncio.wait_for(stop.wait(), tick_s)
        except TimeoutError:
            pass


async def token_check(services: Services, channel_id: int) -> None:
    """The daily look at a channel's token (``GET /debug_token``).

    A token the platform refuses, or reports invalid, stops the channel and
    alerts the community manager, as a failed poll does. A token that expires
    within :data:`TOKEN_EXPIRY_WARNING` leaves the channel running and alerts the
    community manager once per channel per day.
    """
    async with services.sessions() as session:
        row = await session.get(Channel, channel_id)
        if row is None or row.status != "active":
            return
    adapter = await services.channels.get(row)
    check = getattr(adapter, "check_token", None)
    if check is None:
        return
    try:
        status = await check()
        problem = None if status.valid else f"the platform reports the token invalid: {status.detail or 'no detail'}"
    except TokenInvalid as exc:
        problem = str(exc)
    now = utcnow()
    async with services.sessions.begin() as session:
        ch = await session.get(Channel, channel_id, with_for_update=True)
        assert ch is not None
        if problem:
            await mark_token_invalid(services, session, ch, problem)
        elif status.expires_at is not None and status.expires_at - now < TOKEN_EXPIRY_WARNING:
            await alert_community_manager(services, session, f"token-expiry-{ch.id}-{now:%Y%m%d}",
                                          token_expiry_texts(ch.name, ch.platform, status.expires_at))
        else:
            return
    services.wake()
    if problem:
        services.announce("channel.token_invalid", {"channel_id": channel_id, "name": row.name})


def token_expiry_texts(channel_name: str, platform: str, expires_at: datetime) -> dict[str, tuple[str, str]]:
    name, when = one_line(channel_name), f"{expires_at:%Y-%m-%d %H:%M} UTC"
    return {
        "fr": (
            f"Jeton bientôt expiré : {name} ({platform}) le {when}",
            f"Le jeton de « {name} » ({platform}) expire le {when}. Passé cette date, Relais ne pourra plus\n"
            "lire ni répondre sur ce compte.\n\n"
            "Générez un jeton de Page longue durée (docs/channels/facebook.md) et enregistrez-le avec\n"
            "relais channels add ... --token NOUVEAU_JETON.\n",
        ),
        "en": (
            f"Token expiring soon: {name} ({platform}) on {when}",
            f"The token of '{name}' ({platform}) expires on {when}. After that, Relais can no longer read\n"
            "or answer on this account.\n\n"
            "Generate a long-lived Page token (docs/channels/facebook.md) and save it with\n"
            "relais channels add ... --token NEW_TOKEN.\n",
        ),
    }
