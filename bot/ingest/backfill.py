"""X history on demand, beside the live poll: a window of past mentions, one promotion tweet.

Both go through :func:`bot.ingest.store_items.store_items` (each tweet stored
once, whatever fetched it first) and neither touches the channel's poll cursor,
so the live poll neither skips nor repeats anything because of them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.channels.x import XChannel
from bot.errors import ConfigError
from bot.ingest.store_items import store_items
from bot.services import Services
from bot.store.models import Channel, Item

#: X refuses an ``end_time`` less than 10 seconds in the past.
END_TIME_MARGIN = timedelta(seconds=10)


@dataclass
class BackfillProgress:
    channel: str
    page: int
    fetched: int  # on this page
    new: int  # on this page
    total_fetched: int
    total_new: int


@dataclass
class BackfillResult:
    pages: int = 0
    fetched: int = 0
    new: int = 0


def parse_when(text: str, tz: str, *, option: str, end_of_day: bool = False) -> datetime:
    """``YYYY-MM-DD`` or an ISO date-time; without an offset, in the brand's time zone.

    With ``end_of_day``, a bare date means the end of that day (the next midnight).
    """
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            when = datetime.combine(day + timedelta(days=1 if end_of_day else 0), time())
        else:
            when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{option}: {text!r} is not a date (YYYY-MM-DD) or an ISO date-time") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(tz))
    return when.astimezone(timezone.utc)


async def find_x_channel(services: Services, account: str | None, *, tweet_id: str | None = None) -> int:
    """The id of the X channel for ``account`` (a user id); without one, the channel that
    already stored ``tweet_id``, else the only X channel."""
    async with services.sessions() as session:
        if account:
            row = await session.scalar(select(Channel).where(Channel.platform == "x", Channel.external_id == account))
            if row is None:
                raise ConfigError(f"--account {account}: no connected X account with this user id (relais channels list)")
            return row.id
        if tweet_id:
            stored = await session.scalar(select(Item).where(Item.platform == "x", Item.external_id == tweet_id))
            if stored is not None and stored.channel_id is not None:
                return stored.channel_id
        rows = (await session.scalars(select(Channel).where(Channel.platform == "x"))).all()
    if len(rows) != 1:
        raise ConfigError(f"--account: {len(rows)} X accounts are connected; say which one (its user id)")
    return rows[0].id


async def _x_adapter(services: Services, channel_id: int) -> tuple[Channel, XChannel]:
    async with services.sessions() as session:
        row = await session.get(Channel, channel_id)
    assert row is not None
    adapter = await services.channels.get(row)
    if not isinstance(adapter, XChannel):
        raise ConfigError(f"channel {row.name!r} is not an X account")
    return row, adapter


def print_progress(step: BackfillProgress) -> None:
    """One plain line per page on stderr (no terminal control: logs and pipes stay readable)."""
    print(
        f"backfill {step.channel}: page {step.page}: {step.fetched} fetched, {step.new} new"
        f" | {step.total_fetched} fetched, {step.total_new} new so far",
        file=sys.stderr,
        flush=True,
    )


async def backfill_mentions(
    services: Services,
    channel_id: int,
    since: datetime,
    until: datetime | None = None,
    *,
    progress: Callable[[BackfillProgress], None] = lambda step: None,
) -> BackfillResult:
    """Store the account's mentions created in [since, until), page by page.

    New mentions are queued for classification like polled ones (source
    ``backfill``); a second run over the same window stores nothing.
    """
    latest_end = datetime.now(timezone.utc) - END_TIME_MARGIN
    if until is not None and until >= latest_end:
        until = None  # "up to now"
    if until is not None and until <= since:
        raise ConfigError("--until must be after --since")
    row, adapter = await _x_adapter(services, channel_id)
    result = BackfillResult()
    async for items in adapter.backfill(since, until):
        async with services.sessions.begin() as session:
            channel = await session.get(Channel, channel_id)
            stored = await store_items(session, channel, items, source="backfill")
        services.wake()
        result.pages += 1
        result.fetched += len(items)
        result.new += len(stored.new)
        progress(BackfillProgress(row.name, result.pages, len(items), len(stored.new), result.fetched, result.new))
    return result


async def mark_promotion(services: Services, channel_id: int, tweet_id: str, *, promoted: bool = True) -> int:
    """Set ``is_ad`` on a brand tweet, fetching and storing it first when it is not stored.

    Replies classified from now on see ``parent_is_ad``; replies already
    classified keep their label. Returns the item id.
    """
    async with services.sessions() as session:
        item_id = await session.scalar(select(Item.id).where(Item.platform == "x", Item.external_id == tweet_id))
    if item_id is None:
        row, adapter = await _x_adapter(services, channel_id)
        tweet = await adapter.fetch_tweet(tweet_id)
        if not tweet.is_brand_post:
            raise ConfigError(f"--tweet-id {tweet_id}: this tweet is by @{tweet.author.handle}, not by {row.name}")
        async with services.sessions.begin() as session:
            channel = await session.get(Channel, channel_id)
            await store_items(session, channel, [tweet], source="backfill")
    async with services.sessions.begin() as session:
        item = await session.scalar(
            select(Item).where(Item.platform == "x", Item.external_id == tweet_id).with_for_update()
        )
        assert item is not None
        if not item.is_brand_post:
            raise ConfigError(f"--tweet-id {tweet_id}: not a tweet of the brand account (only brand posts are promotions)")
        item.is_ad = promoted
        return item.id
