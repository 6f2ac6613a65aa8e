"""Platforms down or rate-limiting replies for "minutes" (time compressed by making the
retries due instead of sleeping): other Pages and accounts keep being answered, waits
follow the platforms' headers, nothing dies, and every reply goes out exactly once after
recovery. (Polling under outages: tests/channels; SMTP down: tests/notify/test_outbox.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.channels.simulated.graph_api import FakeGraphAPI
from bot.channels.simulated.x_api import FakeXAPI
from bot.domain import Author, InboundItem, ItemKind, Platform
from bot.ingest.store_items import store_items
from bot.pipeline.flow import handlers
from bot.pipeline.worker import Worker
from bot.services import Services
from bot.store.models import Channel, Job, Response, utcnow
from tests.reliability.helpers import add_channel, add_reply, start_app

X_TOKENS = {"consumer_key": "k", "consumer_secret": "s", "access_token_secret": "t"}


def _item(platform: Platform, external_id: str, kind: ItemKind, account: str, parent: str | None) -> InboundItem:
    return InboundItem(platform=platform, external_id=external_id, kind=kind, channel_external_id=account,
                       author=Author(id="77", name="Client"), text="Une question ?",
                       created_time=datetime.now(UTC) - timedelta(minutes=2), parent_external_id=parent)


@pytest.fixture
async def platforms(services: Services) -> AsyncIterator[dict[str, Any]]:
    """Two Graph API hosts (Page A on the failing one), one X API with accounts A and B,
    one reply waiting for each of the four."""
    graph_a, graph_b, x = FakeGraphAPI(), FakeGraphAPI(first_id=50_001), FakeXAPI()
    runners, targets = [], {}
    for name, graph, page in (("fb_a", graph_a, "6001"), ("fb_b", graph_b, "6002")):
        graph.add_page(page, f"Page {page}", f"token-{page}")
        post = graph.publish_post(page, "Nouveauté")
        comment = graph.user_comment(post, {"id": "77", "name": "Client"}, "Une question ?")
        runner, port = await start_app(graph.app)
        runners.append(runner)
        channel_id = await add_channel(services, "facebook", page, f"Page {page}", credentials={"page_token": f"token-{page}"},
                                       api_url=f"http://127.0.0.1:{port}")
        targets[name] = (channel_id, _item(Platform.FACEBOOK, comment, ItemKind.COMMENT, page, post))
    runner, x_port = await start_app(x.app)
    runners.append(runner)
    for name, account in (("x_a", "7001"), ("x_b", "7002")):
        x.add_account(account, f"brand{account}", f"x-token-{account}")
        tweet = x.add_mention(account, "77", "client", "Client", f"@brand{account} une question ?")
        channel_id = await add_channel(services, "x", account, f"@brand{account}", api_url=f"http://127.0.0.1:{x_port}",
                                       credentials={"bearer_token": f"x-token-{account}", "access_token": f"x-token-{account}", **X_TOKENS})
        targets[name] = (channel_id, _item(Platform.X, tweet, ItemKind.MENTION, account, None))
    responses = {}
    for name, (channel_id, item) in targets.items():
        async with services.sessions.begin() as session:
            await store_items(session, await session.get(Channel, channel_id), [item], source="import")
        responses[name] = await add_reply(services, item.external_id, f"Bonjour, voici la réponse ({name}).")
    yield {"graph_a": graph_a, "graph_b": graph_b, "x": x, "responses": responses,
           "targets": {name: item.external_id for name, (_, item) in targets.items()}}
    for runner in runners:
        await runner.cleanup()


async def _state(services: Services, response_id: int) -> tuple[str, Job]:
    async with services.sessions() as session:
        response = await session.get(Response, response_id)
        job = await session.scalar(select(Job).where(Job.dedupe_key == f"respond:{response_id}"))
    assert response is not None and job is not None
    return response.status, job


async def _minutes_pass(services: Services) -> None:
    """Every retry waiting for its backoff becomes due (instead of sleeping through it)."""
    async with services.sessions.begin() as session:
        await session.execute(update(Job).where(Job.status == "queued").values(run_at=utcnow()))


async def test_outages_and_rate_limits_delay_only_their_own_channel_and_lose_nothing(
    services: Services, platforms: dict[str, Any]
) -> None:
    graph_a: FakeGraphAPI = platforms["graph_a"]
    x: FakeXAPI = platforms["x"]
    ids, targets = platforms["responses"], platforms["targets"]
    worker = Worker(services.sessions, handlers(services), concurrency=8)
    graph_a.set_outage(503)  # Graph API down for Page A's host
    x.set_rate_limited(reset_in=300, account="7001")  # X rate-limits account A for 5 minutes

    await worker.drain()
    # the others are answered meanwhile
    assert (await _state(services, ids["fb_b"]))[0] == "sent" and (await _state(services, ids["x_b"]))[0] == "sent"
    status, job = await _state(services, ids["x_a"])
    # X: postponed until x-rate-limit-reset, the try not counted
    assert status == "pending" and job.status == "queued" and job.attempts == 0
    assert utcnow() + timedelta(seconds=250) < job.run_at < utcnow() + timedelta(seconds=310)

    for _ in range(6):  # the outage lasts: retried with backoff, never parked as dead
        await _minutes_pass(services)
        await worker.drain()
    status, job = await _state(services, ids["fb_a"])
    assert status == "pending" and job.status == "queued" and job.attempts == 7 < job.max_attempts
    assert "Transient" in (job.last_error or "")
    assert (await _state(services, ids["x_a"]))[1].attempts == 0

    graph_a.clear_failures()
    graph_a.set_rate_limited(code=32, regain_minutes=7)  # back, but Page A is over its usage: wait as told
    await _minutes_pass(services)
    await worker.drain()
    status, job = await _state(services, ids["fb_a"])
    assert status == "pending" and job.attempts == 7  # not counted
    assert utcnow() + timedelta(minutes=6) < job.run_at < utcnow() + timedelta(minutes=8)

    graph_a.clear_failures()
    x.clear_failures()
    await _minutes_pass(services)
    await worker.drain()
    for name in ids:
        assert (await _state(services, ids[name]))[0] == "sent", name
    # exactly one reply each, on the right platform
    for name, graph in (("fb_a", graph_a), ("fb_b", platforms["graph_b"])):
        assert [c["message"] for c in graph.replies_to(targets[name]) if c["from"]["name"].startswith("Page")] == [
            f"Bonjour, voici la réponse ({name})."]
    for name in ("x_a", "x_b"):
        assert [t["text"] for t in x.replies_to(targets[name])] == [f"Bonjour, voici la réponse ({name})."]
