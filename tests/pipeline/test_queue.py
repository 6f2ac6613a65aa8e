"""The job queue (bot/pipeline/queue.py) and the worker (bot/pipeline/worker.py),
on SQLite and PostgreSQL: dedupe, atomic claims, leases, retries, dead jobs."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import RateLimited, TokenInvalid
from bot.pipeline import queue
from bot.pipeline.worker import TOKEN_INVALID_RECHECK_S, BatchHandler, PermanentFailure, Worker
from bot.store import db
from bot.store.models import Job, utcnow

Sessions = async_sessionmaker[AsyncSession]


async def add_job(sessions: Sessions, kind: str = "test", payload: dict[str, Any] | None = None,
                  **options: Any) -> int:
    """Enqueue one job in its own transaction and return its id."""
    async with sessions.begin() as session:
        assert await queue.enqueue(session, kind, payload or {}, **options)
        return int(await session.scalar(select(func.max(Job.id))))


async def get_job(sessions: Sessions, job_id: int) -> Job:
    async with sessions() as session:
        job = await session.get(Job, job_id)
    assert job is not None
    return job


async def make_due(sessions: Sessions, job_id: int) -> None:
    """Move a job's run_at into the past, as if its backoff delay had elapsed."""
    async with sessions.begin() as session:
        await session.execute(
            update(Job).where(Job.id == job_id).values(run_at=utcnow() - timedelta(seconds=1))
        )


async def count_jobs(sessions: Sessions) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Job)))


# --- enqueue -----------------------------------------------------------------------------


async def test_enqueue_with_the_same_dedupe_key_stores_one_job(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        await queue.enqueue(session, "classify", {"item_id": 1}, dedupe_key="classify:1")
        await queue.enqueue(session, "classify", {"item_id": 1}, dedupe_key="classify:1")
    async with sessions.begin() as session:  # and in a later transaction too
        await queue.enqueue(session, "classify", {"item_id": 99}, dedupe_key="classify:1")
    async with sessions() as session:
        jobs = (await session.scalars(select(Job))).all()
    assert len(jobs) == 1
    assert jobs[0].payload == {"item_id": 1} and jobs[0].status == "queued"
    assert jobs[0].attempts == 0 and jobs[0].dedupe_key == "classify:1"


async def test_enqueue_returns_false_for_a_duplicate_dedupe_key(sessions: Sessions) -> None:
    """The documented contract: a second enqueue of the same key does nothing and returns False."""
    async with sessions.begin() as session:
        first = await queue.enqueue(session, "classify", {"item_id": 1}, dedupe_key="classify:1")
    async with sessions.begin() as session:
        second = await queue.enqueue(session, "classify", {"item_id": 1}, dedupe_key="classify:1")
    assert (first, second) == (True, False)
    assert await count_jobs(sessions) == 1


async def test_enqueue_without_dedupe_key_stores_every_job(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        assert await queue.enqueue(session, "classify", {"item_id": 1})
        assert await queue.enqueue(session, "classify", {"item_id": 1})
    assert await count_jobs(sessions) == 2


async def test_enqueue_is_part_of_the_callers_transaction(sessions: Sessions) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with sessions.begin() as session:
            await queue.enqueue(session, "classify", {"item_id": 1}, dedupe_key="k")
            raise Abort
    assert await count_jobs(sessions) == 0


# --- claim -------------------------------------------------------------------------------


async def test_claim_returns_each_due_job_once(sessions: Sessions) -> None:
    ids = [await add_job(sessions, payload={"n": n}) for n in range(5)]
    async with sessions.begin() as session:
        first = await queue.claim(session, "w1", limit=3)
    async with sessions.begin() as session:
        second = await queue.claim(session, "w2", limit=10)
    async with sessions.begin() as session:
        third = await queue.claim(session, "w3", limit=10)
    assert [j.id for j in first] == ids[:3]
    assert [j.id for j in second] == ids[3:]
    assert third == []
    assert [j.payload for j in first + second] == [{"n": n} for n in range(5)]
    assert all(j.attempts == 1 and j.kind == "test" for j in first + second)
    stored = await get_job(sessions, ids[0])
    assert stored.status == "running" and stored.locked_by == "w1"
    assert stored.locked_until is not None and stored.locked_until > utcnow()


async def test_jobs_with_a_future_run_at_are_not_claimed(sessions: Sessions) -> None:
    later = await add_job(sessions, run_at=utcnow() + timedelta(hours=1))
    now = await add_job(sessions)
    async with sessions.begin() as session:
        claimed = await queue.claim(session, "w1", limit=10)
    assert [j.id for j in claimed] == [now]
    stored = await get_job(sessions, later)
    assert stored.status == "queued" and stored.attempts == 0


async def test_claim_takes_the_oldest_due_jobs_first(sessions: Sessions) -> None:
    recent = await add_job(sessions, run_at=utcnow() - timedelta(minutes=1))
    oldest = await add_job(sessions, run_at=utcnow() - timedelta(hours=1))
    async with sessions.begin() as session:
        [claimed] = await queue.claim(session, "w1", limit=1)
    assert claimed.id == oldest != recent


@pytest.fixture(params=["one_sessionmaker", "one_engine_each"])
async def worker_sessions(request: pytest.FixtureRequest, migrated_url: str, sessions: Sessions
                          ) -> AsyncIterator[list[Sessions]]:
    """Three workers' sessions: one shared sessionmaker, or a separate engine per worker
    (on PostgreSQL, as separate processes would)."""
    if request.param == "one_sessionmaker":
        yield [sessions] * 3
        return
    engines = [db.create_engine(migrated_url) for _ in range(3)]
    yield [db.sessionmaker(engine) for engine in engines]
    for engine in engines:
        await engine.dispose()


async def test_concurrent_workers_run_each_job_exactly_once(
    sessions: Sessions, worker_sessions: list[Sessions]
) -> None:
    total = 300
    async with sessions.begin() as session:
        for n in range(total):
            await queue.enqueue(session, "work", {"n": n})
    seen: list[int] = []
    ran_by: Counter[str] = Counter()

    def handler_for(name: str) -> Any:
        async def handler(payload: dict[str, Any]) -> None:
            await asyncio.sleep(0)  # let the other workers interleave
            seen.append(payload["n"])
            ran_by[name] += 1

        return handler

    workers = [
        Worker(s, {"work": handler_for(f"w{i}")}, worker_id=f"w{i}", concurrency=4)
        for i, s in enumerate(worker_sessions)
    ]
    handled = await asyncio.gather(*(w.drain() for w in workers))

    duplicates = [n for n, c in Counter(seen).items() if c > 1]
    assert duplicates == []
    assert sorted(seen) == list(range(total))
    assert sum(handled) == total
    async with sessions() as session:
        statuses = dict((await session.execute(select(Job.status, func.count()).group_by(Job.status))).all())
        attempts = set((await session.scalars(select(Job.attempts))).all())
    assert statuses == {"done": total}
    assert attempts == {1}


# --- failures ----------------------------------------------------------------------------


async def test_a_failing_job_is_retried_with_backoff_then_parked_dead(sessions: Sessions) -> None:
    calls: list[dict[str, Any]] = []

    async def broken(payload: dict[str, Any]) -> None:
        calls.append(payload)
        raise RuntimeError(f"boom #{len(calls)}")

    worker = Worker(sessions, {"test": broken}, worker_id="w1")
    job_id = await add_job(sessions, payload={"x": 1}, max_attempts=3)

    before = utcnow()
    assert await worker.run_once() == 1
    job = await get_job(sessions, job_id)
    assert job.status == "queued" and job.attempts == 1
    assert job.last_error == "RuntimeError: boom #1"
    assert job.locked_until is None
    # backoff after the 1st attempt: 2 s (+-20 % jitter)
    assert before + timedelta(seconds=1.6) <= job.run_at <= utcnow() + timedelta(seconds=2.4)
    assert await worker.run_once() == 0  # not due yet

    await make_due(sessions, job_id)
    before = utcnow()
    assert await worker.run_once() == 1
    job = await get_job(sessions, job_id)
    assert job.status == "queued" and job.attempts == 2
    assert job.last_error == "RuntimeError: boom #2"
    assert before + timedelta(seconds=3.2) <= job.run_at <= utcnow() + timedelta(seconds=4.8)

    await make_due(sessions, job_id)
    assert await worker.run_once() == 1
    job = await get_job(sessions, job_id)
    assert job.status == "dead" and job.attempts == 3
    assert job.last_error == "RuntimeError: boom #3"
    assert job.finished_at is not None
    assert len(calls) == 3

    # dead is visible (stats, and its error), and never claimed again
    await make_due(sessions, job_id)
    assert await worker.run_once() == 0
    async with sessions() as session:
        stats = await queue.stats(session)
        dead = (await session.scalars(select(Job).where(Job.status == "dead"))).all()
    assert stats["counts"] == {"dead": 1}
    assert [(j.id, j.last_error) for j in dead] == [(job_id, "RuntimeError: boom #3")]


async def test_retry_dead_brings_a_dead_job_back_with_fresh_attempts(sessions: Sessions) -> None:
    fixed = False
    ran: list[int] = []

    async def handler(payload: dict[str, Any]) -> None:
        if not fixed:
            raise PermanentFailure("the payload is wrong")
        ran.append(payload["n"])

    worker = Worker(sessions, {"test": handler}, worker_id="w1")
    job_id = await add_job(sessions, payload={"n": 7}, max_attempts=2)
    await worker.run_once()
    assert (await get_job(sessions, job_id)).status == "dead"

    async with sessions.begin() as session:
        assert await queue.retry_dead(session, job_id)
    job = await get_job(sessions, job_id)
    assert job.status == "queued" and job.attempts == 0 and job.finished_at is None
    async with sessions.begin() as session:  # only dead jobs can be sent back
        assert not await queue.retry_dead(session, job_id)

    fixed = True
    assert await worker.run_once() == 1
    job = await get_job(sessions, job_id)
    assert job.status == "done" and job.attempts == 1 and job.last_error is None
    assert ran == [7]


async def test_rate_limited_postpones_by_retry_after_without_using_an_attempt(
    sessions: Sessions,
) -> None:
    async def limited(payload: dict[str, Any]) -> None:
        raise RateLimited("slow down", retry_after=120)

    worker = Worker(sessions, {"test": limited}, worker_id="w1")
    job_id = await add_job(sessions, max_attempts=2)
    for _ in range(5):  # more times than max_attempts: still not dead
        before = utcnow()
        assert await worker.run_once() == 1
        job = await get_job(sessions, job_id)
        assert job.status == "queued" and job.attempts == 0
        assert before + timedelta(seconds=120) <= job.run_at <= utcnow() + timedelta(seconds=120)
        assert job.last_error == "RateLimited: slow down"
        assert await worker.run_once() == 0
        await make_due(sessions, job_id)


async def test_token_invalid_holds_the_job_without_using_an_attempt(sessions: Sessions) -> None:
    async def dead_token(payload: dict[str, Any]) -> None:
        raise TokenInvalid("token expired")

    worker = Worker(sessions, {"test": dead_token}, worker_id="w1")
    job_id = await add_job(sessions, max_attempts=1)
    before = utcnow()
    await worker.run_once()
    job = await get_job(sessions, job_id)
    assert job.status == "queued" and job.attempts == 0
    assert job.run_at >= before + timedelta(seconds=TOKEN_INVALID_RECHECK_S)
    assert job.last_error == "TokenInvalid: token expired"


async def test_permanent_failure_goes_straight_to_dead(sessions: Sessions) -> None:
    async def refuse(payload: dict[str, Any]) -> None:
        raise PermanentFailure("item 42 does not exist")

    worker = Worker(sessions, {"test": refuse}, worker_id="w1")
    job_id = await add_job(sessions, max_attempts=8)
    assert await worker.run_once() == 1
    job = await get_job(sessions, job_id)
    assert job.status == "dead" and job.attempts == 1
    assert job.last_error == "PermanentFailure: item 42 does not exist"


async def test_unknown_job_kind_is_dead_with_a_clear_error(sessions: Sessions) -> None:
    worker = Worker(sessions, {"test": lambda p: asyncio.sleep(0)}, worker_id="w1")
    job_id = await add_job(sessions, kind="mystery")
    assert await worker.run_once() == 1
    job = await get_job(sessions, job_id)
    assert job.status == "dead" and job.attempts == 1
    assert job.last_error == "PermanentFailure: no handler for job kind 'mystery'"


# --- leases ------------------------------------------------------------------------------


async def test_a_job_whose_lease_expired_is_claimed_by_another_worker(sessions: Sessions) -> None:
    job_id = await add_job(sessions)
    async with sessions.begin() as session:
        [lost] = await queue.claim(session, "crashed", limit=1, lease_s=0.001)
    await asyncio.sleep(0.02)  # let the tiny lease run out (not a timing assertion)

    async with sessions.begin() as session:
        [again] = await queue.claim(session, "rescuer", limit=1)
    assert again.id == lost.id == job_id
    assert again.attempts == 2
    job = await get_job(sessions, job_id)
    assert job.status == "running" and job.locked_by == "rescuer"

    # the worker that lost its lease can no longer finish or fail the job
    async with sessions.begin() as session:
        await queue.complete(session, job_id, "crashed")
        await queue.fail(session, lost, "crashed", "late failure")
    job = await get_job(sessions, job_id)
    assert job.status == "running" and job.locked_by == "rescuer" and job.last_error is None

    async with sessions.begin() as session:
        await queue.complete(session, job_id, "rescuer")
    assert (await get_job(sessions, job_id)).status == "done"


async def test_a_job_with_a_live_lease_is_not_claimed_again(sessions: Sessions) -> None:
    await add_job(sessions)
    async with sessions.begin() as session:
        assert len(await queue.claim(session, "w1", limit=1, lease_s=120)) == 1
    async with sessions.begin() as session:
        assert await queue.claim(session, "w2", limit=1) == []


async def test_the_worker_reruns_a_job_whose_lease_expired(sessions: Sessions) -> None:
    ran: list[dict[str, Any]] = []

    async def handler(payload: dict[str, Any]) -> None:
        ran.append(payload)

    job_id = await add_job(sessions, payload={"n": 1}, max_attempts=3)
    async with sessions.begin() as session:
        await queue.claim(session, "crashed", limit=1, lease_s=0.001)
    await asyncio.sleep(0.02)
    assert await Worker(sessions, {"test": handler}, worker_id="rescuer").drain() == 1
    job = await get_job(sessions, job_id)
    assert job.status == "done" and job.locked_by == "rescuer"
    assert ran == [{"n": 1}]


async def test_a_job_whose_lease_keeps_expiring_ends_dead(sessions: Sessions) -> None:
    ran: list[dict[str, Any]] = []

    async def handler(payload: dict[str, Any]) -> None:
        ran.append(payload)

    job_id = await add_job(sessions, max_attempts=1)
    async with sessions.begin() as session:
        await queue.claim(session, "crashed", limit=1, lease_s=0.001)
    await asyncio.sleep(0.02)
    assert await Worker(sessions, {"test": handler}, worker_id="rescuer").run_once() == 1
    job = await get_job(sessions, job_id)
    assert job.status == "dead"
    assert job.last_error == "PermanentFailure: lease expired too many times (worker crashes?)"
    assert ran == []


async def test_stats_count_jobs_per_status_and_the_oldest_due_age(sessions: Sessions) -> None:
    await add_job(sessions, run_at=utcnow() - timedelta(minutes=10))
    await add_job(sessions, run_at=utcnow() + timedelta(minutes=10))
    async with sessions() as session:
        stats = await queue.stats(session)
    assert stats["counts"] == {"queued": 2}
    assert 600 <= stats["oldest_due_age_s"] < 3600


# --- batch handlers ----------------------------------------------------------------------


async def test_a_batch_kind_runs_the_jobs_claimed_together_in_one_call(sessions: Sessions) -> None:
    ids = [await add_job(sessions, "batch", {"n": n}) for n in range(5)]
    calls: list[list[int]] = []

    async def run(payloads: list[dict[str, Any]]) -> None:
        calls.append([p["n"] for p in payloads])

    worker = Worker(sessions, {"batch": BatchHandler(run)}, worker_id="w1", concurrency=8)
    assert await worker.drain() == 5
    assert calls == [[0, 1, 2, 3, 4]]
    assert {(await get_job(sessions, i)).status for i in ids} == {"done"}


async def test_a_failed_batch_runs_each_job_alone_and_the_failure_stays_on_its_job(sessions: Sessions) -> None:
    ids = [await add_job(sessions, "batch", {"n": n}, max_attempts=1) for n in range(4)]
    calls: list[list[int]] = []

    async def run(payloads: list[dict[str, Any]]) -> None:
        calls.append([p["n"] for p in payloads])
        if any(p["n"] == 2 for p in payloads):
            raise ValueError("item 2 is poison")

    worker = Worker(sessions, {"batch": BatchHandler(run)}, worker_id="w1", concurrency=8)
    assert await worker.drain() == 4
    assert calls == [[0, 1, 2, 3], [0], [1], [2], [3]]
    jobs = [await get_job(sessions, i) for i in ids]
    assert [j.status for j in jobs] == ["done", "done", "dead", "done"]
    assert jobs[2].last_error == "ValueError: item 2 is poison" and jobs[0].last_error is None


# --- hand-off: a stage's next job runs at once in the same worker --------------------------


def chain(sessions: Sessions, calls: list[tuple[str, list[int]]], *, fail_first: bool = False) -> dict[str, Any]:
    """Two batch kinds, ``first`` queueing a ``second`` job in its own transaction."""
    failed: list[bool] = []

    async def first(payloads: list[dict[str, Any]]) -> None:
        calls.append(("first", [p["n"] for p in payloads]))
        async with sessions.begin() as session:
            await queue.enqueue(session, "second", {"n": [p["n"] for p in payloads]})
            await queue.enqueue(session, "later", {}, run_at=utcnow() + timedelta(hours=1))  # not due: queued
            await queue.enqueue(session, "single", {})  # not a batch kind: queued
        if fail_first and not failed:
            failed.append(True)
            raise ValueError("failed after its commit")

    async def second(payloads: list[dict[str, Any]]) -> None:
        calls.append(("second", [n for p in payloads for n in p["n"]]))

    async def nothing(payload: dict[str, Any]) -> None:
        return None

    return {"first": BatchHandler(first), "second": BatchHandler(second), "later": BatchHandler(second), "single": nothing}


async def jobs_by_kind(sessions: Sessions) -> dict[str, list[Job]]:
    async with sessions() as session:
        jobs = (await session.scalars(select(Job).order_by(Job.id))).all()
    out: dict[str, list[Job]] = {}
    for job in jobs:
        out.setdefault(job.kind, []).append(job)
    return out


async def test_a_job_queued_by_a_batch_stage_runs_in_the_same_round_without_waiting_in_the_queue(sessions: Sessions) -> None:
    for n in range(3):
        await add_job(sessions, "first", {"n": n})
    calls: list[tuple[str, list[int]]] = []
    worker = Worker(sessions, chain(sessions, calls), worker_id="w1", concurrency=8)

    assert await worker.run_once() == 4  # three claimed, one handed off
    assert calls == [("first", [0, 1, 2]), ("second", [0, 1, 2])]
    jobs = await jobs_by_kind(sessions)
    (second,) = jobs["second"]
    assert (second.status, second.attempts, second.locked_by) == ("done", 1, "w1")
    assert [j.status for j in jobs["later"] + jobs["single"]] == ["queued", "queued"]

    calls.clear()  # without hand-off, the next stage waits for the next claim
    await add_job(sessions, "first", {"n": 9})
    plain = Worker(sessions, chain(sessions, calls), worker_id="w2", concurrency=8, hand_off=False)
    await plain.run_once()
    assert calls == [("first", [9])]
    assert (await jobs_by_kind(sessions))["second"][-1].status == "queued"


async def test_jobs_handed_off_by_a_stage_that_then_fails_go_back_to_the_queue(sessions: Sessions) -> None:
    await add_job(sessions, "first", {"n": 1}, max_attempts=3)
    calls: list[tuple[str, list[int]]] = []
    worker = Worker(sessions, chain(sessions, calls, fail_first=True), worker_id="w1", concurrency=8)

    assert await worker.run_once() == 1
    assert calls == [("first", [1])]  # the second stage did not run for a failed first
    jobs = await jobs_by_kind(sessions)
    assert jobs["first"][0].status == "queued" and jobs["first"][0].last_error == "ValueError: failed after its commit"
    (second,) = jobs["second"]  # committed before the failure: back in the queue, due, attempt not counted
    assert (second.status, second.attempts, second.locked_by) == ("queued", 0, None)

    await worker.run_once()  # a later round takes it like any queued job
    assert calls[-1] == ("second", [1])
    assert (await jobs_by_kind(sessions))["second"][0].status == "done"


async def test_a_cancelled_round_releases_the_jobs_it_handed_itself(sessions: Sessions) -> None:
    await add_job(sessions, "first", {"n": 1})
    started = asyncio.Event()

    async def first(payloads: list[dict[str, Any]]) -> None:
        async with sessions.begin() as session:
            await queue.enqueue(session, "second", {"n": [1]})

    async def second(payloads: list[dict[str, Any]]) -> None:
        started.set()
        await asyncio.Event().wait()  # stuck until cancelled

    worker = Worker(sessions, {"first": BatchHandler(first), "second": BatchHandler(second)}, worker_id="w1")
    task = asyncio.create_task(worker.run_once())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    jobs = await jobs_by_kind(sessions)
    assert jobs["first"][0].status == "done"
    assert (jobs["second"][0].status, jobs["second"][0].attempts, jobs["second"][0].locked_by) == ("queued", 0, None)


async def test_a_handed_off_job_whose_worker_died_is_taken_by_another_when_its_lease_runs_out(sessions: Sessions) -> None:
    async with sessions.begin() as session:  # what a worker killed mid-chain leaves behind
        with queue.handing_off(queue.Handoff("dead-worker", 0.05, frozenset({"second"}))) as handoff:
            await queue.enqueue(session, "second", {"n": [5]})
    assert [j.kind for j in handoff.jobs] == ["second"]
    calls: list[tuple[str, list[int]]] = []
    rescuer = Worker(sessions, chain(sessions, calls), worker_id="rescuer")
    assert await rescuer.run_once() == 0  # running, its lease still live
    await asyncio.sleep(0.1)
    assert await rescuer.run_once() == 1
    assert calls == [("second", [5])]
    (second,) = (await jobs_by_kind(sessions))["second"]
    assert (second.status, second.attempts, second.locked_by) == ("done", 2, "rescuer")


async def test_ids_are_queued_in_jobs_of_at_most_a_hundred_each_deduplicated(sessions: Sessions) -> None:
    ids = list(range(1000, 1250))
    async with sessions.begin() as session:
        assert await queue.enqueue_chunks(session, "route", "item_ids", ids, "route-batch", {"x": 1}) == 3
        assert await queue.enqueue_chunks(session, "route", "item_ids", ids, "route-batch", {"x": 1}) == 0  # a rerun
    jobs = (await jobs_by_kind(sessions))["route"]
    assert [len(j.payload["item_ids"]) for j in jobs] == [100, 100, 50]
    assert [i for j in jobs for i in j.payload["item_ids"]] == ids and {j.payload["x"] for j in jobs} == {1}
    assert [j.dedupe_key for j in jobs] == ["route-batch:1000", "route-batch:1100", "route-batch:1200"]


async def test_a_stage_hands_its_worker_a_hundred_ids_and_queues_the_rest_for_any_worker(sessions: Sessions) -> None:
    await add_job(sessions, "first", {"n": 1})
    seen: list[list[int]] = []

    async def first(payloads: list[dict[str, Any]]) -> None:
        async with sessions.begin() as session:
            await queue.enqueue_chunks(session, "second", "item_ids", list(range(250)), "second")

    async def second(payloads: list[dict[str, Any]]) -> None:
        seen.append([i for p in payloads for i in p["item_ids"]])

    worker = Worker(sessions, {"first": BatchHandler(first), "second": BatchHandler(second)}, worker_id="w1")
    assert await worker.run_once() == 2
    assert seen == [list(range(100))]  # run at once, in this worker
    jobs = (await jobs_by_kind(sessions))["second"]
    assert [(j.status, j.locked_by) for j in jobs] == [("done", "w1"), ("queued", None), ("queued", None)]
    other = Worker(sessions, {"second": BatchHandler(second)}, worker_id="w2")
    assert await other.run_once() == 2
    assert seen[1] == list(range(100, 250))


async def test_a_full_claim_takes_more_small_jobs_of_a_batch_kind_but_leaves_others_half(sessions: Sessions) -> None:
    for n in range(20):
        await add_job(sessions, "small", {"item_ids": [n]})
    async with sessions.begin() as session:  # 4 one-id jobs fill the claim: more, up to half of the 20
        taken = await queue.claim(session, "w1", limit=4, batch_kinds=frozenset({"small"}), batch_limit=64)
    assert len(taken) == 10 and {j.kind for j in taken} == {"small"}
    async with sessions.begin() as session:  # not a batch kind: the limit is the limit
        assert len(await queue.claim(session, "w2", limit=4)) == 4

    async with sessions.begin() as session:
        await session.execute(update(Job).where(Job.kind == "small").values(status="done"))
    for n in range(20):
        await add_job(sessions, "large", {"item_ids": list(range(60))})
    async with sessions.begin() as session:  # two jobs of 60 ids: already more than 100 ids, no more
        taken = await queue.claim(session, "w3", limit=2, batch_kinds=frozenset({"small", "large"}), batch_limit=64)
    assert [j.kind for j in taken] == ["large", "large"]
