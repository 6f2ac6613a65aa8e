"""The flow's batch plumbing: job payloads naming many ids, and a failing batch split per id."""

from __future__ import annotations

from collections import Counter
import pytest
from sqlalchemy import select, update

from bot.pipeline import queue
from bot.pipeline.flow import _split_on_failure, payload_ids
from bot.pipeline.worker import BatchHandler, Worker
from bot.services import Services
from bot.store.models import Job, utcnow


def test_payload_ids_reads_lists_and_single_ids_in_order_each_once() -> None:
    payloads = [{"item_ids": [3, 1]}, {"item_id": 7}, {"item_ids": [1, 9]}, {"other": 1}]
    assert payload_ids(payloads) == [3, 1, 7, 9]
    assert payload_ids([{"assignment_ids": [4]}, {"assignment_id": "5"}], "assignment_id") == [4, 5]


async def jobs_of(services: Services, kind: str) -> list[Job]:
    async with services.sessions() as session:
        return list((await session.scalars(select(Job).where(Job.kind == kind).order_by(Job.id))).all())


async def test_a_failing_job_of_many_ids_becomes_one_job_per_id_and_the_poison_dies_alone(services: Services) -> None:
    done: Counter[int] = Counter()

    async def stage(ids: list[int]) -> None:
        if 13 in ids:
            raise ValueError("item 13 is poison")
        done.update(ids)

    split = _split_on_failure(services, "classify", "item_id", stage, {"relabel_only": True})
    async with services.sessions.begin() as session:
        await queue.enqueue(session, "classify", {"item_ids": [11, 12, 13, 14], "relabel_only": True})
    worker = Worker(services.sessions, {"classify": BatchHandler(split)}, worker_id="w1", concurrency=8)

    await worker.drain()
    first, *split_jobs = await jobs_of(services, "classify")
    assert first.status == "done"  # its ids now belong to the jobs it was split into
    assert [j.payload for j in split_jobs] == [{"item_ids": [i], "relabel_only": True} for i in (11, 12, 13, 14)]
    assert [j.status for j in split_jobs] == ["done", "done", "queued", "done"]
    assert split_jobs[2].last_error == "ValueError: item 13 is poison"
    assert done == Counter({11: 1, 12: 1, 14: 1})  # the four jobs, claimed together, failed, then ran alone

    for _ in range(split_jobs[2].max_attempts):  # every retry due at once, until it is parked
        async with services.sessions.begin() as session:
            await session.execute(update(Job).where(Job.status == "queued").values(run_at=utcnow()))
        await worker.drain()
    poison = (await jobs_of(services, "classify"))[3]
    assert poison.status == "dead" and poison.attempts == poison.max_attempts
    assert [j.status for j in await jobs_of(services, "classify")].count("dead") == 1
    assert done == Counter({11: 1, 12: 1, 14: 1})  # nobody handled twice


async def test_failing_jobs_claimed_together_raise_for_the_worker_to_run_them_alone(services: Services) -> None:
    async def stage(ids: list[int]) -> None:
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        await _split_on_failure(services, "route", "item_id", stage)([{"item_ids": [5, 6]}, {"item_id": 7}])
    assert await jobs_of(services, "route") == []  # not split: each job fails or succeeds alone


async def test_a_failing_job_of_one_id_fails_itself(services: Services) -> None:
    async def stage(ids: list[int]) -> None:
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        await _split_on_failure(services, "route", "item_id", stage)([{"item_ids": [5]}])
    assert await jobs_of(services, "route") == []
