"""XChannel against FakeXAPI on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import shared_dir

from bot.channels.base import ChannelConfig, ReplyTarget
from bot.channels.simulated.x_api import FakeXAPI
from bot.channels.x import XChannel, weighted_length
from bot.domain import ItemKind, Platform
from bot.errors import RateLimited, ReplyRejected, TokenInvalid, Transient

ACCOUNT = "1000"
CREDENTIALS = {"bearer_token": "bearer-1", "consumer_key": "ck", "consumer_secret": "cs",
               "access_token": "at-1", "access_token_secret": "ats"}


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


def mention(fake: FakeXAPI, i: int, **kwargs: object) -> str:
    return fake.add_mention(ACCOUNT, f"2{i:03d}", f"user{i}", f"User {i}", f"hello {i}",
                            **kwargs)  # type: ignore[arg-type]


def mention_calls(fake: FakeXAPI) -> list[str]:
    return [r for r in fake.requests if "/mentions" in r]


def test_weighted_length() -> None:
    assert weighted_length("a" * 280) == 280
    assert weighted_length("é" * 10) == 10
    assert weighted_length("日本") == 4
    assert weighted_length("see https://example.com/a/very/long/path?with=query") == 4 + 23
    assert weighted_length("visit example.com now") == 6 + 23 + 4
    assert weighted_length("👍") == 2 and weighted_length("👍🏽") == 2
    assert weighted_length("👨‍👩‍👧") == 2 and weighted_length("🇫🇷") == 2
    assert weighted_length("e\u0301") == 1  # NFC


async def test_mentions_page_with_next_token(fake: FakeXAPI, channel: XChannel) -> None:
    ids = [mention(fake, i, followers=i * 10) for i in range(230)]
    result = await channel.fetch_new({})
    assert [item.external_id for item in result.items] == ids[::-1]
    assert len(mention_calls(fake)) == 3
    assert result.cursor == {"since_id": ids[-1]}
    item = result.items[0]
    assert item.platform is Platform.X and item.kind is ItemKind.MENTION
    assert item.author.handle == "user229" and item.author.name == "User 229"
    assert item.author.followers == 2290 and item.text == "@relais hello 229"
    assert item.permalink == f"https://x.com/user229/status/{ids[-1]}"
    assert item.thread_external_id == ids[-1] and item.parent_external_id is None
    assert item.created_time.tzinfo is not None


async def test_since_id_resumes_without_gap_or_repeat(fake: FakeXAPI, channel: XChannel) -> None:
    first = [mention(fake, i) for i in range(3)]
    result = await channel.fetch_new({})
    assert {i.external_id for i in result.items} == set(first)
    later = [mention(fake, i) for i in range(3, 108)]
    again = await channel.fetch_new(result.cursor)
    assert sorted(i.external_id for i in again.items) == sorted(later)
    assert again.cursor == {"since_id": later[-1]}
    empty = await channel.fetch_new(again.cursor)
    assert empty.items == [] and empty.cursor == again.cursor
    assert "since_id=" + later[-1] in mention_calls(fake)[-1]


async def test_first_poll_is_bounded(fake: FakeXAPI, channel: XChannel) -> None:
    mention(fake, 1, created_at=datetime.now(timezone.utc) - timedelta(days=3))
    recent = mention(fake, 2)
    result = await channel.fetch_new({})
    assert [i.external_id for i in result.items] == [recent]


async def test_reply_threading_and_own_tweets(fake: FakeXAPI, channel: XChannel) -> None:
    root = mention(fake, 1)
    sent = await channel.reply_public(ReplyTarget(root, ItemKind.MENTION, "2001"), "Thanks!")
    [reply] = fake.replies_to(root)
    assert reply["id"] == sent.platform_id and reply["author_id"] == ACCOUNT
    follow_up = fake.add_mention(ACCOUNT, "2001", "user1", "User 1", "@relais but why?",
                                 in_reply_to=sent.platform_id)
    fake.mentions[ACCOUNT].append(sent.platform_id)  # our reply mentions us too
    items = {i.external_id: i for i in (await channel.fetch_new({})).items}
    assert items[follow_up].parent_external_id == sent.platform_id
    assert items[follow_up].thread_external_id == root
    assert items[sent.platform_id].is_brand_post and channel.is_own(ACCOUNT)


async def test_too_long_reply_is_rejected_before_any_request(
        fake: FakeXAPI, channel: XChannel) -> None:
    with pytest.raises(ReplyRejected, match="290/280") as caught:
        await channel.reply_public(ReplyTarget("1", ItemKind.MENTION, "2"), "日" * 145)
    assert fake.requests == [] and caught.value.reason == "too_long"


async def test_platform_refusal_is_reply_rejected(fake: FakeXAPI, channel: XChannel) -> None:
    with pytest.raises(ReplyRejected, match="deleted or not visible") as caught:
        await channel.reply_public(ReplyTarget("42", ItemKind.MENTION, "2"), "hi")
    assert caught.value.reason == "not_allowed"


async def test_dm_reply(fake: FakeXAPI, channel: XChannel) -> None:
    root = mention(fake, 1)
    sent = await channel.reply_private(ReplyTarget(root, ItemKind.MENTION, "2001"), "Check DMs")
    [dm] = fake.dms
    assert dm["dm_event_id"] == sent.platform_id
    assert (dm["participant_id"], dm["sender_id"], dm["text"]) == ("2001", ACCOUNT, "Check DMs")


async def test_429_with_reset_header(fake: FakeXAPI, channel: XChannel) -> None:
    fake.set_rate_limited(reset_in=120)
    with pytest.raises(RateLimited) as caught:
        await channel.fetch_new({})
    assert 100 <= caught.value.retry_after <= 121
    fake.set_rate_limited(reset_in=-30)  # a reset already past: still wait a little
    with pytest.raises(RateLimited) as caught:
        await channel.fetch_new({})
    assert caught.value.retry_after == 1


async def test_429_without_headers(fake: FakeXAPI, channel: XChannel) -> None:
    fake.set_rate_limited(headers=False)
    with pytest.raises(RateLimited) as caught:
        await channel.reply_private(ReplyTarget("1", ItemKind.MENTION, "2"), "hi")
    assert caught.value.retry_after == 60 and caught.value.__cause__ is not None


async def test_revoked_credentials(fake: FakeXAPI, channel: XChannel) -> None:
    fake.revoke(ACCOUNT)
    with pytest.raises(TokenInvalid):
        await channel.fetch_new({})
    with pytest.raises(TokenInvalid):
        await channel.reply_public(ReplyTarget("1", ItemKind.MENTION, "2"), "hi")


async def test_outage_and_unreachable_are_transient(
        fake: FakeXAPI, channel: XChannel, unused_tcp_port: int) -> None:
    fake.set_outage(503)
    with pytest.raises(Transient):
        await channel.fetch_new({})
    fake.clear_failures()
    assert (await channel.fetch_new({})).items == []
    dead = XChannel(ChannelConfig(platform=Platform.X, external_id=ACCOUNT, name="x",
                                  credentials=CREDENTIALS,
                                  api_url=f"http://127.0.0.1:{unused_tcp_port}"))
    try:
        with pytest.raises(Transient):
            await dead.fetch_new({})
    finally:
        await dead.close()


async def test_fake_matches_the_documented_shape(fake: FakeXAPI, aiohttp_client) -> None:
    documented = json.loads((shared_dir() / "samples"
                             / "x" / "mentions_response__x_docs.json").read_text())
    for i in range(6):
        mention(fake, i)
    client = await aiohttp_client(fake.app)
    headers = {"Authorization": "Bearer bearer-1"}
    response = await client.get(f"/2/users/{ACCOUNT}/mentions", headers=headers, params={
        "max_results": "5", "expansions": "author_id",
        "tweet.fields": "created_at,author_id,public_metrics"})
    body = await response.json()
    assert set(body) == set(documented)
    assert set(body["meta"]) == set(documented["meta"])
    assert set(documented["data"][0]) <= set(body["data"][0]) | {"edit_history_tweet_ids"}
    assert body["data"][0]["created_at"].endswith("Z") and len(body["data"]) == 5
    bad = await client.get(f"/2/users/{ACCOUNT}/mentions", headers=headers,
                           params={"max_results": "1"})
    problem = await bad.json()
    assert bad.status == 400 and problem["type"].startswith("https://api.x.com/2/problems/")
    assert (await client.get(f"/2/users/{ACCOUNT}/mentions")).status == 401
    fake.add_mention(ACCOUNT, "666", "evil", "Evil", "<img src=x onerror=alert(1)>")
    page = await (await client.get(f"/__account/{ACCOUNT}")).text()
    assert "@relais" in page and "&lt;img" in page and "<img" not in page
