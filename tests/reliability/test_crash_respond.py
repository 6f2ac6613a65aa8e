"""A ``relais worker`` killed with SIGKILL in the middle of a batch of replies, while the
platform calls are in flight: after a restart every reply is on the Page exactly once.

One reply reached Facebook but the worker died before reading the answer (the intent
says ``sending``); the other never reached it. The restarted worker finds the dead
worker's jobs once their lease expires, asks the Graph API which reply is already
there (``find_public_reply``), records that one as sent and posts only the other.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from bot.channels.simulated.graph_api import FakeGraphAPI
from bot.domain import Author, InboundItem, ItemKind, Platform
from bot.ingest.store_items import store_items
from bot.services import open_services
from bot.store import db
from bot.store.models import Channel, Item, Job, Response
from tests.conftest import make_settings
from tests.reliability.helpers import (
    PlatformHold,
    Proc,
    add_channel,
    add_reply,
    base_env,
    eventually,
    start_app,
    worker_env,
)

PAGE, TOKEN = "4242", "page-token-crash"
OTHER, OTHER_TOKEN = "4343", "page-token-other"  # a second Page: each Page has its own call thread


def _comment(graph: FakeGraphAPI, comment_id: str, post_id: str) -> InboundItem:
    row = graph.comments[comment_id]
    return InboundItem(
        platform=Platform.FACEBOOK, external_id=comment_id, kind=ItemKind.COMMENT, channel_external_id=row["page_id"],
        author=Author(id=row["from"]["id"], name=row["from"]["name"]), text=row["message"],
        created_time=datetime.now(UTC) - timedelta(minutes=5), parent_external_id=post_id,
    )


def _page_replies(graph: FakeGraphAPI, comment_id: str) -> list[dict[str, object]]:
    page = graph.comments[comment_id]["page_id"]
    return [c for c in graph.comments.values() if c["in_reply_to"] == comment_id and c["from"]["id"] == page]


async def test_sigkill_mid_respond_posts_each_reply_exactly_once(tmp_path: Path, pg_url: str, models_dir: Path) -> None:
    graph = FakeGraphAPI()
    graph.add_page(PAGE, "Boulangerie", TOKEN)
    graph.add_page(OTHER, "Boulangerie Lyon", OTHER_TOKEN)
    post = graph.publish_post(PAGE, "Nouvelle tarte")
    other_post = graph.publish_post(OTHER, "Nouveau pain")
    reached = graph.user_comment(post, {"id": "71", "name": "Ana"}, "Tarte trop sucrée")
    lost = graph.user_comment(other_post, {"id": "72", "name": "Bob"}, "Où est le pain ?")
    hold = PlatformHold()
    app = graph.make_app()
    app.middlewares.append(hold.middleware())
    runner, port = await start_app(app)
    settings = make_settings(tmp_path, pg_url, models_dir)
    db.upgrade(pg_url)
    env = worker_env(base_env(tmp_path / "w", pg_url, models_dir), worker_lease="2",
                     fb_app_secret="test-app-secret", fb_verify_token="test-verify-token")
    procs: list[Proc] = []
    try:
        async with open_services(settings) as services:
            for page, token, post_id, comment_id in ((PAGE, TOKEN, post, reached), (OTHER, OTHER_TOKEN, other_post, lost)):
                channel_id = await add_channel(services, "facebook", page, f"Page {page}", credentials={"page_token": token},
                                               api_url=f"http://127.0.0.1:{port}")
                async with services.sessions.begin() as session:
                    channel = await session.get(Channel, channel_id)
                    await store_items(session, channel, [_comment(graph, comment_id, post_id)], source="import")
            first = await add_reply(services, reached, "Merci Ana, nous transmettons au chef.")
            second = await add_reply(services, lost, "Bonjour Bob, il revient samedi !")
            hold.rules = {f"/{reached}/comments": "after", f"/{lost}/comments": "before"}

            procs.append(Proc(["worker"], env, tmp_path, tmp_path / "worker1.log"))
            await eventually(lambda: len(hold.held) == 2, timeout=60)
            procs[0].kill()  # both calls in flight, one of them already done on the platform

            async with services.sessions() as session:
                statuses = set((await session.scalars(select(Response.status))).all())
                running = (await session.scalars(select(Job.status).where(Job.kind == "respond"))).all()
            assert statuses == {"sending"}  # the intents were recorded before the calls
            assert set(running) == {"running"}
            assert len(_page_replies(graph, reached)) == 1 and _page_replies(graph, lost) == []

            hold.release()
            procs.append(Proc(["worker"], env, tmp_path, tmp_path / "worker2.log"))

            async def both_sent() -> bool:
                async with services.sessions() as session:
                    rows = (await session.scalars(select(Response.status))).all()
                return set(rows) == {"sent"}

            await eventually(both_sent, timeout=90)
            async with services.sessions() as session:
                found = await session.get(Response, first)
                sent = await session.get(Response, second)
                jobs = (await session.execute(select(Job.status, Job.locked_by).where(Job.kind == "respond"))).all()
                items = set((await session.scalars(select(Item.status))).all())
    finally:
        for proc in procs:
            proc.close()
        await runner.cleanup()

    # exactly one reply under each comment: the one that had reached the Page was not posted again
    assert len(_page_replies(graph, reached)) == 1 and len(_page_replies(graph, lost)) == 1
    assert found is not None and sent is not None
    assert found.platform_id == _page_replies(graph, reached)[0]["id"]
    assert "found on the platform" in (found.error or "")
    assert sent.platform_id == _page_replies(graph, lost)[0]["id"]
    # the dead worker's jobs came back by lease expiry and were finished by the new worker
    assert {status for status, _ in jobs} == {"done"}
    assert items == {"answered"}
