"""XChannel direct messages against FakeXAPI on loopback (the real tweepy client)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest

from bot.channels.base import ChannelConfig, ReplyTarget
from bot.channels.simulated.x_api import FakeXAPI
from bot.channels.x import XChannel
from bot.domain import ItemKind, Platform
from bot.errors import TokenInvalid

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


def dm(fake: FakeXAPI, i: int, text: str | None = None, **kwargs: object) -> str:
    return fake.add_dm(ACCOUNT, f"3{i:03d}", f"fan{i}", f"Fan {i}", text or f"dm {i}",
                       **kwargs)  # type: ignore[arg-type]


def dm_calls(fake: FakeXAPI) -> list[str]:
    return [r for r in fake.requests if r.startswith("GET /2/dm_events")]


async def test_dms_are_off_unless_switched_on(fake: FakeXAPI, channel: XChannel) -> None:
    dm(fake, 1)
    result = await channel.fetch_new({})
    assert result.items == [] and dm_calls(fake) == []
    assert "dms" not in result.cursor


async def test_dms_become_private_message_items(fake: FakeXAPI, channel: XChannel) -> None:
    event = dm(fake, 7, "Ma commande n'est jamais arrivée")
    result = await channel.fetch_new({"dms": True})
    [item] = result.items
    assert item.platform is Platform.X and item.kind is ItemKind.MESSAGE
    assert item.external_id == event and item.text == "Ma commande n'est jamais arrivée"
    assert (item.author.id, item.author.handle, item.author.name) == ("3007", "fan7", "Fan 7")
    assert item.thread_external_id == f"{ACCOUNT}-3007" and not item.is_brand_post
    assert item.created_time.tzinfo is not None
    assert result.cursor == {"dms": True, "dm_since_id": event}
    [call] = dm_calls(fake)
    assert "dm_event.fields=created_at" in call and "expansions=sender_id" in call


async def test_dm_cursor_resumes_across_pages_without_gap_or_repeat(
        fake: FakeXAPI, channel: XChannel) -> None:
    first = [dm(fake, i) for i in range(3)]
    result = await channel.fetch_new({"dms": True})
    assert sorted(i.external_id for i in result.items) == sorted(first)
    later = [dm(fake, i) for i in range(3, 233)]  # three pages of 100
    calls_before = len(dm_calls(fake))
    again = await channel.fetch_new(result.cursor)
    assert sorted(i.external_id for i in again.items) == sorted(later)
    assert len(dm_calls(fake)) - calls_before == 3
    assert again.cursor["dm_since_id"] == later[-1]
    empty = await channel.fetch_new(again.cursor)
    assert empty.items == [] and empty.cursor == again.cursor


async def test_own_dms_are_ignored_but_move_the_cursor(fake: FakeXAPI, channel: XChannel) -> None:
    asked = dm(fake, 1, "Avez-vous du pain sans gluten ?")
    sent = await channel.reply_private(ReplyTarget(asked, ItemKind.MESSAGE, "3001"), "Oui !")
    result = await channel.fetch_new({"dms": True})
    assert [i.external_id for i in result.items] == [asked]
    assert result.cursor["dm_since_id"] == sent.platform_id
    assert (await channel.fetch_new(result.cursor)).items == []


async def test_first_dm_poll_is_bounded(fake: FakeXAPI, channel: XChannel) -> None:
    dm(fake, 1, created_at=datetime.now(timezone.utc) - timedelta(days=3))
    recent = dm(fake, 2)
    result = await channel.fetch_new({"dms": True})
    assert [i.external_id for i in result.items] == [recent]


async def test_dms_and_mentions_keep_their_own_cursors(fake: FakeXAPI, channel: XChannel) -> None:
    tweet = fake.add_mention(ACCOUNT, "2001", "user1", "User 1", "hello")
    message = dm(fake, 1)
    result = await channel.fetch_new({"dms": True})
    assert {i.external_id: i.kind for i in result.items} == {tweet: ItemKind.MENTION,
                                                             message: ItemKind.MESSAGE}
    assert result.cursor == {"dms": True, "since_id": tweet, "dm_since_id": message}


async def test_reply_to_a_dm_is_a_dm_to_its_sender(fake: FakeXAPI, channel: XChannel) -> None:
    message = dm(fake, 4)
    [item] = (await channel.fetch_new({"dms": True})).items
    sent = await channel.reply_private(
        ReplyTarget(item.external_id, item.kind, item.author.id,
                    thread_external_id=item.thread_external_id), "Nous regardons")
    [reply] = [d for d in fake.dms if d["sender_id"] == ACCOUNT]
    assert reply["dm_event_id"] == sent.platform_id and reply["participant_id"] == "3004"
    assert reply["dm_conversation_id"] == item.thread_external_id and message != sent.platform_id


async def test_dm_reading_needs_user_credentials(fake: FakeXAPI, aiohttp_server) -> None:
    server = await aiohttp_server(fake.app)
    bearer_only = XChannel(ChannelConfig(platform=Platform.X, external_id=ACCOUNT, name="R",
                                         credentials={"bearer_token": "bearer-1"},
                                         api_url=str(server.make_url("")).rstrip("/")))
    try:
        assert (await bearer_only.fetch_new({})).items == []
        with pytest.raises(TokenInvalid, match="missing: consumer_key, consumer_secret"):
            await bearer_only.fetch_new({"dms": True})
        with pytest.raises(TokenInvalid, match="to send a direct message"):
            await bearer_only.reply_private(ReplyTarget("1", ItemKind.MESSAGE, "3001"), "hi")
    finally:
        await bearer_only.close()
    assert dm_calls(fake) == [] and fake.dms == []


async def test_revoked_account_cannot_read_dms(fake: FakeXAPI, channel: XChannel) -> None:
    dm(fake, 1)
    fake.revoke(ACCOUNT)
    with pytest.raises(TokenInvalid):
        await channel.fetch_new({"dms": True, "since_id": "1"})
