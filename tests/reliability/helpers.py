"""Shared pieces of the reliability tests: ``relais worker`` / ``relais serve`` subprocesses,
stored webhook deliveries, a platform call held mid-flight, waiting for the queue to settle."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bot.services import Services
from bot.store.models import Channel, Job, utcnow

#: Texts the classifier sends to different rules (complaint, product feedback, other...).
TEXTS = (
    "Le pain était rassis ce matin, très déçue, je veux un remboursement",
    "Vous devriez faire une version sans gluten de vos croissants",
    "The delivery was late and the cake was crushed, terrible service",
    "Love the new croissant ad music, what song is it?",
    "Bonjour, à quelle heure ouvrez-vous dimanche ?",
    "Could you bring back the lemon tart? It was the best",
)


#: One expert's inbox for complaints, triage for the rest: mail for some items, not all.
TRIAGE_RULES = """
version: 1
community_manager: cm@example.com
defaults: {sla: 4h, reply_mode: public}
experts:
  - {name: Chloé, email: chloe@example.com, language: fr}
  - {name: Camille, email: cm@example.com, language: fr}
rules:
  - name: complaints
    when: {category: complaint, min_confidence: 0.5}
    assign: chloe@example.com
  - name: everything else
    default: true
    assign: triage
"""


def worker_env(base: dict[str, str], **settings: str) -> dict[str, str]:
    """``base`` (from tests/cli/relais_runner.make_relais) plus RELAIS_* settings."""
    env = dict(base)
    env.update({f"RELAIS_{key.upper()}": value for key, value in settings.items()})
    return env


class Proc:
    """A ``relais`` subprocess; its output goes to a file so a full pipe never blocks it."""

    def __init__(self, args: Iterable[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "bot", *args], env=env, cwd=cwd, stdout=self._out, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, like a crash or the OOM killer."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=timeout)

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=30)
        self._out.close()


async def add_channel(services: Services, platform: str, external_id: str, name: str, **values: Any) -> int:
    async with services.sessions.begin() as session:
        channel = Channel(platform=platform, external_id=external_id, name=name, **values)
        session.add(channel)
        await session.flush()
        return channel.id


async def job_counts(services: Services) -> dict[str, int]:
    """Jobs per status, counting only ``queued`` ones that are due."""
    async with services.sessions() as session:
        rows = (
            await session.execute(
                select(Job.status, func.count())
                .where((Job.status != "queued") | (Job.run_at <= utcnow()))
                .group_by(Job.status)
            )
        ).all()
    return {status: n for status, n in rows}


async def settled(services: Services, timeout: float, procs: Iterable[Proc] = ()) -> dict[str, int]:
    """Wait until no job is due or running; fails early if a worker process died."""
    async with asyncio.timeout(timeout):
        while True:
            counts = await job_counts(services)
            if not counts.get("queued") and not counts.get("running"):
                return counts
            for proc in procs:
                assert proc.popen.poll() is None, f"worker died:\n{proc.output()[-3000:]}"
            await asyncio.sleep(0.3)


async def eventually(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Wait until ``check()`` (sync or async) returns something truthy, and return it."""
    async with asyncio.timeout(timeout):
        while True:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(interval)


def base_env(folder: Path, database_url: str, models_dir: Path) -> dict[str, str]:
    """The environment of a ``relais`` subprocess for this database (see relais_runner)."""
    from tests.cli.relais_runner import make_relais

    return make_relais(folder, database_url, models_dir).env


class PlatformHold:
    """A test middleware in front of a fake platform app: holds chosen POSTs mid-call.

    ``after``: the platform does the work (the reply exists), then never answers, like a
    worker killed while waiting for the response. ``before``: the request hangs before the
    platform sees it; released with a 503, it never does the work.
    """

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}  # path fragment -> "after" | "before"
        self.held: list[str] = []
        self.released = asyncio.Event()

    def middleware(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def hold(request: web.Request, handler: Any) -> web.StreamResponse:
            mode = next((m for fragment, m in self.rules.items() if fragment in request.path), None)
            if request.method != "POST" or mode is None:
                return await handler(request)
            if mode == "after":
                await handler(request)  # the platform did it; the answer is lost
            self.held.append(request.path)
            await self.released.wait()
            return web.Response(status=503, text="held by the test")

        return hold

    def release(self) -> None:
        self.rules.clear()
        self.released.set()


async def start_app(app: Any) -> tuple[Any, int]:
    from aiohttp import web

    from tests.conftest import free_port

    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def add_reply(services: Services, item_external_id: str, text: str, *, mode: str = "public") -> int:
    """What the reply page does: a ``pending`` response and its ``respond`` job, together."""
    from bot.pipeline import queue
    from bot.store.models import Expert, Item, Response

    async with services.sessions.begin() as session:
        item = await session.scalar(select(Item).where(Item.external_id == item_external_id))
        expert = await session.scalar(select(Expert).limit(1))
        assert item is not None and expert is not None
        response = Response(item_id=item.id, expert_id=expert.id, mode=mode, text=text,
                            idempotency_key=f"test:{item_external_id}", status="pending")
        session.add(response)
        await session.flush()
        await queue.enqueue(session, "respond", {"response_id": response.id},
                            dedupe_key=f"respond:{response.id}", max_attempts=60)
        return response.id


def feed_delivery(page_id: str, first: int, count: int) -> bytes:
    """One Page webhook body carrying ``count`` new visitor comments (numbered from ``first``)."""
    import json
    import time as _time

    now = int(_time.time()) - 60
    changes = [
        {"field": "feed", "value": {
            "item": "comment", "verb": "add", "comment_id": f"{page_id}_1_{n}", "post_id": f"{page_id}_1",
            "parent_id": f"{page_id}_1", "from": {"id": str(9_000_000 + n), "name": f"Visitor {n}"},
            "message": f"{TEXTS[n % len(TEXTS)]} ({n})", "created_time": now}}
        for n in range(first, first + count)
    ]
    return json.dumps({"object": "page", "entry": [{"id": page_id, "time": now, "changes": changes}]}).encode()


async def store_deliveries(services: Services, bodies: list[bytes]) -> None:
    """What ``POST /webhooks/facebook`` stores before its 200: each raw body and its ``ingest_delivery`` job."""
    from bot.pipeline import queue
    from bot.store.models import Delivery

    async with services.sessions.begin() as session:
        for body in bodies:
            delivery = Delivery(platform="facebook", body=body, received_at=utcnow())
            session.add(delivery)
            await session.flush()
            await queue.enqueue(session, "ingest_delivery", {"delivery_id": delivery.id},
                                dedupe_key=f"delivery:{delivery.id}")
