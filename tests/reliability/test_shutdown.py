"""SIGTERM on ``relais serve``: the listener closes at once (no new deliveries), the job in
hand is finished (here: its platform call fails and is recorded for a retry), nothing is
left locked, and the process exits 0. Another worker then posts the reply exactly once."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from bot.channels.simulated.graph_api import FakeGraphAPI
from bot.domain import Author, InboundItem, ItemKind, Platform
from bot.ingest.store_items import store_items
from bot.services import open_services
from bot.store import db
from bot.store.models import Channel, Job, Response
from tests.conftest import free_port, make_settings
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

PAGE, TOKEN = "5151", "page-token-term"


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


async def test_sigterm_closes_the_listener_finishes_the_job_in_hand_and_exits_0(
    tmp_path: Path, pg_url: str, models_dir: Path
) -> None:
    graph = FakeGraphAPI()
    graph.add_page(PAGE, "Boulangerie", TOKEN)
    post = graph.publish_post(PAGE, "Nouvelle brioche")
    comment = graph.user_comment(post, {"id": "81", "name": "Chloé"}, "La brioche est-elle sans lactose ?")
    hold = PlatformHold()
    hold.rules = {f"/{comment}/comments": "before"}
    app = graph.make_app()
    app.middlewares.append(hold.middleware())
    runner, graph_port = await start_app(app)
    port = free_port()
    settings = make_settings(tmp_path, pg_url, models_dir)
    db.upgrade(pg_url)
    env = worker_env(base_env(tmp_path / "w", pg_url, models_dir), port=str(port), fb_app_secret="test-app-secret",
                     fb_verify_token="test-verify-token", worker_lease="120")
    procs: list[Proc] = []
    try:
        async with open_services(settings) as services:
            channel_id = await add_channel(services, "facebook", PAGE, "Boulangerie", credentials={"page_token": TOKEN},
                                           api_url=f"http://127.0.0.1:{graph_port}", poll_interval_s=3600.0)
            async with services.sessions.begin() as session:
                channel = await session.get(Channel, channel_id)
                row = graph.comments[comment]
                item = InboundItem(platform=Platform.FACEBOOK, external_id=comment, kind=ItemKind.COMMENT,
                                   channel_external_id=PAGE, author=Author(id="81", name="Chloé"), text=row["message"],
                                   created_time=datetime.now(UTC) - timedelta(minutes=3), parent_external_id=post)
                await store_items(session, channel, [item], source="import")
            response_id = await add_reply(services, comment, "Oui, elle est sans lactose !")

            server = Proc(["serve"], env, tmp_path, tmp_path / "serve.log")
            procs.append(server)
            await eventually(lambda: hold.held, timeout=60)  # the reply's platform call is in flight
            assert not _refused(port)
            server.popen.send_signal(15)  # SIGTERM

            await eventually(lambda: _refused(port), timeout=10)  # no new deliveries
            await asyncio.sleep(0.5)
            assert server.popen.poll() is None  # still finishing the job in hand
            hold.release()  # the platform answers (503): the try ends and is recorded
            assert await asyncio.to_thread(server.popen.wait, 60) == 0, server.output()[-3000:]

            async with services.sessions() as session:
                job = await session.scalar(select(Job).where(Job.kind == "respond"))
                response = await session.get(Response, response_id)
            assert job is not None and response is not None
            assert (job.status, job.locked_until) == ("queued", None)  # nothing left locked
            assert response.status == "pending" and "Transient" in (response.error or "")
            assert not [c for c in graph.comments.values() if c["in_reply_to"] == comment]

            async with services.sessions.begin() as session:  # skip the retry's backoff
                (await session.get(Job, job.id)).run_at = datetime.now(UTC)  # type: ignore[union-attr]
            procs.append(Proc(["worker"], env, tmp_path, tmp_path / "worker.log"))

            async def sent() -> bool:
                async with services.sessions() as session:
                    return (await session.get(Response, response_id)).status == "sent"  # type: ignore[union-attr]

            await eventually(sent, timeout=60)
    finally:
        for proc in procs:
            proc.close()
        await runner.cleanup()
    replies = [c for c in graph.comments.values() if c["in_reply_to"] == comment]
    assert [r["message"] for r in replies] == ["Oui, elle est sans lactose !"]
