"""A reply left ``sending`` (its worker died during the platform call) is checked on the
platform before anything is sent again: on X here (the SIGKILL itself, on Facebook, is in
test_crash_respond.py); a private reply, which cannot be looked up, is parked ``in_doubt``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.channels.base import ReplyTarget
from bot.channels.simulated.graph_api import FakeGraphAPI
from bot.channels.simulated.x_api import FakeXAPI
from bot.domain import Author, InboundItem, ItemKind, Platform
from bot.ingest.store_items import store_items
from bot.pipeline.flow import handlers
from bot.pipeline.worker import Worker
from bot.services import Services
from bot.store.models import Channel, Job, Response
from tests.reliability.helpers import add_channel, add_reply, start_app

ACCOUNT, PAGE = "8001", "8101"


@pytest.fixture
async def stack(services: Services) -> AsyncIterator[dict[str, Any]]:
    x, graph = FakeXAPI(), FakeGraphAPI()
    x.add_account(ACCOUNT, "brand", "x-token")
    graph.add_page(PAGE, "Page", "fb-token")
    x_runner, x_port = await start_app(x.app)
    fb_runner, fb_port = await start_app(graph.app)
    x_channel = await add_channel(services, "x", ACCOUNT, "@brand", api_url=f"http://127.0.0.1:{x_port}", credentials={
        "bearer_token": "x-token", "access_token": "x-token", "consumer_key": "k", "consumer_secret": "s",
        "access_token_secret": "t"})
    fb_channel = await add_channel(services, "facebook", PAGE, "Page", credentials={"page_token": "fb-token"},
                                   api_url=f"http://127.0.0.1:{fb_port}")
    yield {"x": x, "graph": graph, "x_channel": x_channel, "fb_channel": fb_channel}
    await x_runner.cleanup()
    await fb_runner.cleanup()


async def _item(services: Services, channel_id: int, item: InboundItem) -> None:
    async with services.sessions.begin() as session:
        await store_items(session, await session.get(Channel, channel_id), [item], source="import")


async def _interrupted(services: Services, response_id: int) -> None:
    """The state a worker killed during the platform call leaves behind."""
    async with services.sessions.begin() as session:
        await session.execute(update(Response).where(Response.id == response_id).values(status="sending"))


async def _mention(services: Services, stack: dict[str, Any], n: int) -> str:
    tweet = stack["x"].add_mention(ACCOUNT, f"9{n}", f"fan{n}", "Fan", f"@brand question {n}")
    await _item(services, stack["x_channel"], InboundItem(
        platform=Platform.X, external_id=tweet, kind=ItemKind.MENTION, channel_external_id=ACCOUNT,
        author=Author(id=f"9{n}", name="Fan"), text="question", created_time=datetime.now(UTC) - timedelta(minutes=1)))
    return tweet


async def test_x_reply_in_doubt_is_looked_up_then_recorded_or_sent_once(services: Services, stack: dict[str, Any]) -> None:
    x: FakeXAPI = stack["x"]
    landed, lost = await _mention(services, stack, 1), await _mention(services, stack, 2)
    first = await add_reply(services, landed, "Merci, c'est noté !")
    second = await add_reply(services, lost, "Bonjour, on regarde ça.")
    async with services.sessions() as session:
        channel = await session.get(Channel, stack["x_channel"])
    adapter = await services.channels.get(channel)
    # the first reply reached X before its worker died; the second did not
    already = await adapter.reply_public(ReplyTarget(landed, ItemKind.MENTION, "91"), "Merci, c'est noté !")
    await _interrupted(services, first)
    await _interrupted(services, second)

    await Worker(services.sessions, handlers(services)).drain()

    async with services.sessions() as session:
        found, sent = await session.get(Response, first), await session.get(Response, second)
    assert found is not None and sent is not None
    assert (found.status, found.platform_id) == ("sent", already.platform_id)  # not posted again
    assert sent.status == "sent"
    assert [t["id"] for t in x.replies_to(landed)] == [already.platform_id]
    assert [t["text"] for t in x.replies_to(lost)] == ["Bonjour, on regarde ça."]


async def test_private_reply_in_doubt_is_parked_for_a_person(services: Services, stack: dict[str, Any]) -> None:
    graph: FakeGraphAPI = stack["graph"]
    post = graph.publish_post(PAGE, "Nouveauté")
    comment = graph.user_comment(post, {"id": "55", "name": "Zoé"}, "Ma commande ?")
    await _item(services, stack["fb_channel"], InboundItem(
        platform=Platform.FACEBOOK, external_id=comment, kind=ItemKind.COMMENT, channel_external_id=PAGE,
        author=Author(id="55", name="Zoé"), text="Ma commande ?", created_time=datetime.now(UTC), parent_external_id=post))
    response_id = await add_reply(services, comment, "Nous vous écrivons en privé.", mode="private")
    await _interrupted(services, response_id)

    await Worker(services.sessions, handlers(services)).drain()

    async with services.sessions() as session:
        response = await session.get(Response, response_id)
        job = await session.scalar(select(Job).where(Job.kind == "respond"))
    assert response is not None and response.status == "in_doubt" and "check" in (response.error or "")
    assert job is not None and job.status == "dead"
    assert graph.private_replies == []  # nothing sent a second time
