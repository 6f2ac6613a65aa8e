"""XChannel backfill windows, tweet lookup and partial errors, against FakeXAPI on loopback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest

from bot.channels.base import ChannelConfig
from bot.channels.simulated.x_api import FakeXAPI
from bot.channels.x import XChannel
from bot.domain import ItemKind, Platform
from bot.errors import ReplyRejected

ACCOUNT = "1000"
CREDENTIALS = {"bearer_token": "bearer-1", "consumer_key": "ck", "consumer_secret": "cs",
               "access_token": "at-1", "access_token_secret": "ats"}
NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture
def fake() -> FakeXAPI:
    fake = FakeXAPI()
    fake.add_account(ACCOUNT, "relais", "bearer-1", access_token="at-1", name="Relais")
    return fake


@pytest.fixture
async def channel(fake: FakeXAPI, aiohttp_server) -> AsyncIterator[XChannel]:
    server = await aiohttp_server(fake.app)
    channel = XChannel(ChannelConfig(platform=Platform.X, external_id=ACCOUNT, name="Relais",
                                     credentials=CREDENTIALS,
                                     api_url=str(server.make_url("")).rstrip("/")))
    yield channel
    await channel.close()


def old_mention(fake: FakeXAPI, i: int, days_ago: float) -> str:
    return fake.add_mention(ACCOUNT, f"2{i:03d}", f"user{i}", f"User {i}", f"old {i}",
                            created_at=NOW - timedelta(days=days_ago))


async def test_backfill_window_pages(fake: FakeXAPI, channel: XChannel) -> None:
    inside = [old_mention(fake, i, 5 + i / 1000) for i in range(150)]
    old_mention(fake, 900, 20)  # before the window
    old_mention(fake, 901, 1)  # after it
    pages = [page async for page in channel.backfill(NOW - timedelta(days=10),
                                                     NOW - timedelta(days=2))]
    assert [len(p) for p in pages] == [100, 50]
    assert sorted(i.external_id for p in pages for i in p) == sorted(inside)
    calls = [r for r in fake.requests if "/mentions" in r]
    assert all("start_time=" in c and "end_time=" in c and "since_id" not in c for c in calls)


async def test_fetch_own_tweet_is_a_brand_post(fake: FakeXAPI, channel: XChannel) -> None:
    promo = fake.add_tweet(ACCOUNT, "-20 % sur les croissants ce week-end !")
    item = await channel.fetch_tweet(promo)
    assert item.kind is ItemKind.POST and item.is_brand_post
    assert item.author.handle == "relais" and item.external_id == promo
    other = fake.add_mention(ACCOUNT, "2001", "user1", "User 1", "hi")
    fetched = await channel.fetch_tweet(other)
    assert fetched.kind is ItemKind.MENTION and not fetched.is_brand_post


async def test_fetch_missing_tweet(fake: FakeXAPI, channel: XChannel) -> None:
    with pytest.raises(ReplyRejected, match="no tweet 42"):
        await channel.fetch_tweet("42")


async def test_partial_errors_are_logged_not_fatal(
        fake: FakeXAPI, channel: XChannel, caplog: pytest.LogCaptureFixture) -> None:
    parent = fake.add_mention(ACCOUNT, "2001", "user1", "User 1", "first")
    reply = fake.add_mention(ACCOUNT, "2002", "user2", "User 2", "answer", in_reply_to=parent)
    fake.delete_tweet(parent)
    with caplog.at_level(logging.WARNING, logger="bot.channels.x"):
        result = await channel.fetch_new({})
    assert [i.external_id for i in result.items] == [reply]
    assert result.cursor == {"since_id": reply}
    [record] = [r for r in caplog.records if "partial error" in r.getMessage()]
    assert f"'resource_id': '{parent}'" in record.getMessage()  # the error dict, as %r
    assert "resource-not-found" in record.getMessage()
