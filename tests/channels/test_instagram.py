"""InstagramChannel against FakeGraphAPI on loopback, and an Instagram comment from its webhook
to a reply on the fake platform through the whole stack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.channels.base import ChannelConfig, ReplyTarget
from bot.channels.instagram import InstagramChannel
from bot.channels.simulated.graph_api import FakeGraphAPI
from bot.demo.experts import reply_link
from bot.domain import ItemKind, Platform
from bot.errors import ReplyRejected, TokenInvalid
from bot.store.models import Channel, Item
from tests.e2e.test_pipeline_end_to_end import (  # noqa: F401 (stack: fixture)
    PAGE_ID,
    PAGE_TOKEN,
    Stack,
    _answer_by_link,
    _status,
    eventually,
    stack,
)

IG_ID = "17841430541631416"
PAGE, TOKEN = "1001", "page-token-1001"


@pytest.fixture
def fake() -> FakeGraphAPI:
    fake = FakeGraphAPI()
    fake.add_page(PAGE, "Relais Coffee", TOKEN)
    fake.add_page("2002", "Other Page", "other-token")
    fake.add_instagram_account(IG_ID, "relaiscoffee", PAGE)
    return fake


@pytest.fixture
async def channel(fake: FakeGraphAPI, aiohttp_server) -> AsyncIterator[InstagramChannel]:
    server = await aiohttp_server(fake.app)
    config = ChannelConfig(platform=Platform.INSTAGRAM, external_id=IG_ID, name="@relaiscoffee",
                           credentials={"page_token": TOKEN}, api_url=str(server.make_url("/")))
    channel = InstagramChannel(config)
    yield channel
    await channel.close()


async def test_reply_lands_under_the_comment(fake: FakeGraphAPI, channel: InstagramChannel) -> None:
    media = fake.instagram_media(IG_ID, "Latte art")
    comment = fake.instagram_comment(media, {"id": "848067418322071", "username": "ann"}, "Prix ?")
    sent = await channel.reply_public(ReplyTarget(comment, ItemKind.COMMENT, "848067418322071",
                                                  media, media), "4 euros")
    [reply] = fake.instagram_replies(comment)
    assert reply["id"] == sent.platform_id and reply["text"] == "4 euros"
    assert reply["from"]["id"] == IG_ID and channel.is_own(IG_ID)
    assert f"POST /v21.0/{comment}/replies" in fake.requests


async def test_hide_and_private_reply(fake: FakeGraphAPI, channel: InstagramChannel) -> None:
    media = fake.instagram_media(IG_ID, "Latte art")
    comment = fake.instagram_comment(media, {"id": "5", "username": "troll"}, "spam")
    target = ReplyTarget(comment, ItemKind.COMMENT, "5", media, media)
    await channel.hide(target, True)
    assert fake.ig_comments[comment]["hidden"] is True
    await channel.hide(target, False)
    assert fake.ig_comments[comment]["hidden"] is False
    with pytest.raises(ReplyRejected, match="public") as caught:
        await channel.reply_private(target, "psst")
    assert caught.value.reason == "not_allowed"


async def test_fetch_new_reads_comments_of_recent_media(fake: FakeGraphAPI,
                                                        channel: InstagramChannel) -> None:
    now = datetime.now(UTC)
    old_media = fake.instagram_media(IG_ID, "Last month", created_time=now - timedelta(days=30))
    fake.instagram_comment(old_media, {"id": "1", "username": "a"}, "old", created_time=now - timedelta(days=29))
    media = fake.instagram_media(IG_ID, "Today", created_time=now - timedelta(hours=2))
    comment = fake.instagram_comment(media, {"id": "2", "username": "bea"}, "Bravo !",
                                     created_time=now - timedelta(hours=1))
    result = await channel.fetch_new({})
    [item] = result.items
    assert (item.external_id, item.platform, item.kind) == (comment, Platform.INSTAGRAM, ItemKind.COMMENT)
    assert (item.author.id, item.author.handle, item.text) == ("2", "bea", "Bravo !")
    assert item.parent_external_id == item.thread_external_id == media
    assert result.cursor == {"since": int(item.created_time.timestamp())}


async def test_another_pages_token_cannot_reach_the_account(fake: FakeGraphAPI, aiohttp_server) -> None:
    server = await aiohttp_server(fake.app)
    config = ChannelConfig(platform=Platform.INSTAGRAM, external_id=IG_ID, name="x",
                           credentials={"page_token": "other-token"}, api_url=str(server.make_url("/")))
    channel = InstagramChannel(config)
    try:
        with pytest.raises(TokenInvalid, match="permission"):
            await channel.fetch_new({})
    finally:
        await channel.close()


async def test_instagram_comment_webhook_to_a_public_reply(stack: Stack) -> None:  # noqa: F811
    stack.graph.add_instagram_account(IG_ID, "boulangerietest", PAGE_ID)
    async with stack.services.sessions.begin() as session:
        fb = await session.scalar(select(Channel).where(Channel.external_id == PAGE_ID))
        assert fb is not None
        session.add(Channel(platform="instagram", external_id=IG_ID, name="@boulangerietest",
                            credentials={"page_token": PAGE_TOKEN}, api_url=fb.api_url,
                            poll_interval_s=3600.0))
    media = stack.graph.instagram_media(IG_ID, "Nos macarons de Noël 🎄")
    comment = stack.graph.instagram_comment(
        media, {"id": "848067418322071", "username": "m_waqar"},
        "Les macarons reçus hier étaient écrasés et rassis, très déçu de la commande")
    [(_, value, object_, field)] = stack.graph.pending_webhooks  # the shape of sample 06
    assert (object_, field) == ("instagram", "comments") and value["media"]["id"] == media
    assert await stack.graph.deliver_pending() == [200]

    mail = await stack.catcher.wait_for(lambda m: "écrasés" in m.get_body(("plain",)).get_content(), timeout=30)
    link = reply_link(mail)
    assert link
    await _answer_by_link(stack, link, mode="public")
    replies = await eventually(lambda: stack.graph.instagram_replies(comment))
    assert replies[0]["text"].startswith("Toutes nos excuses") and replies[0]["from"]["id"] == IG_ID
    await eventually(lambda: _status(stack.services, comment, "answered"))
    async with stack.services.sessions() as session:
        item = await session.scalar(select(Item).where(Item.external_id == comment))
    assert item is not None and item.platform == "instagram" and item.source == "webhook"
    assert item.author_handle == "m_waqar"
