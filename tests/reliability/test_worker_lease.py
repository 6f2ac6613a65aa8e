"""Leases: a long job keeps its lease while it runs; a stopping worker gives its unfinished
jobs back at once instead of leaving them locked until the lease runs out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.pipeline import queue
from bot.pipeline.worker import Worker
from bot.store import db
from bot.store.models import Job, utcnow


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await asyncio.to_thread(db.upgrade, database_url)
    engine = db.create_engine(database_url)
    yield db.sessionmaker(engine)
    await engine.dispose()


async def _enqueue(sessions: async_sessionmaker[AsyncSession], kind: str, n: int = 1) -> None:
    async with sessions.begin() as session:
        for i in range(n):
            await queue.enqueue(session, kind, {"i": i})


async def _jobs(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Job]:
    async with sessions() as session:
        return {f"{j.kind}:{j.payload['i']}": j for j in (await session.scalars(select(Job))).all()}


async def test_a_job_longer_than_its_lease_is_renewed_and_runs_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    runs: list[str] = []

    async def slow(payload: dict[str, Any]) -> None:
        runs.append("slow")
        await asyncio.sleep(2.0)  # more than three leases

    first = Worker(sessions, {"slow": slow}, worker_id="first", lease_s=0.6)
    second = Worker(sessions, {"slow": slow}, worker_id="second", lease_s=0.6)
    await _enqueue(sessions, "slow")
    running = asyncio.create_task(first.run_once())
    while not runs:
        await asyncio.sleep(0.02)
    taken_by_second = 0
    while not running.done():  # the second worker keeps trying to claim meanwhile
        taken_by_second += await second.run_once()
        await asyncio.sleep(0.1)
    assert await running == 1
    assert taken_by_second == 0 and runs == ["slow"]
    job = (await _jobs(sessions))["slow:0"]
    assert (job.status, job.attempts, job.locked_by) == ("done", 1, "first")


async def test_shutdown_finishes_what_it_can_and_releases_the_rest_at_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    started = asyncio.Event()

    async def stuck(payload: dict[str, Any]) -> None:
        started.set()
        await asyncio.Event().wait()  # a platform call that does not come back

    async def quick(payload: dict[str, Any]) -> None:
        return None

    await _enqueue(sessions, "stuck")
    await _enqueue(sessions, "quick", 2)
    worker = Worker(sessions, {"stuck": stuck, "quick": quick}, worker_id="leaving", lease_s=120)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 30)
    await worker.shutdown(task, grace_s=0.3)
    assert task.done()

    jobs = await _jobs(sessions)
    assert {jobs["quick:0"].status, jobs["quick:1"].status} == {"done"}  # finished: recorded
    held = jobs["stuck:0"]
    # given back: due now, unlocked, and the interrupted try is not counted
    assert (held.status, held.locked_by, held.locked_until, held.attempts) == ("queued", None, None, 0)
    assert held.run_at <= utcnow()

    done: list[int] = []

    async def finish(payload: dict[str, Any]) -> None:
        done.append(payload["i"])

    # another worker takes it immediately, without waiting for the 120 s lease
    assert await Worker(sessions, {"stuck": finish}, worker_id="next").drain() == 1
    assert done == [0]
    assert (await _jobs(sessions))["stuck:0"].status == "done"
