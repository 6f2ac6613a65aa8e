"""A table-backed job queue.

Jobs are claimed atomically: one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE
SKIP LOCKED) RETURNING`` on PostgreSQL (several workers, several machines), the
same statement without the lock clause on SQLite (whose writer lock serialises
it). A claim is a lease: a job whose worker died is claimed again when its
lease runs out. Failures are retried with exponential backoff (or after the
delay a platform asked for); after ``max_attempts`` a job is parked as ``dead``
— visible and retryable, never dropped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.db import dialect_insert
from bot.store.models import Job, utcnow

MAX_BACKOFF_S = 15 * 60


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any],
    *,
    dedupe_key: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int = 8,
) -> bool:
    """Add a job in the caller's transaction. With ``dedupe_key``, a second
    enqueue of the same key does nothing (returns False)."""
    stmt = (
        dialect_insert(session)(Job)
        .values(
            kind=kind,
            payload=payload,
            dedupe_key=dedupe_key,
            run_at=run_at or utcnow(),
            max_attempts=max_attempts,
            status="queued",
            attempts=0,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(Job.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def enqueue_many(
    session: AsyncSession, rows: list[tuple[str, dict[str, Any], str | None, datetime | None, int]]
) -> int:
    """:func:`enqueue` for many jobs: each row is (kind, payload, dedupe_key, run_at,
    max_attempts). A key already used is skipped. The rows go as multi-row INSERTs
    (SQLAlchemy's "insertmanyvalues", one compiled statement). Returns how many jobs
    were added."""
    if not rows:
        return 0
    now = utcnow()
    values = [
        {"kind": kind, "payload": payload, "dedupe_key": dedupe_key, "run_at": run_at or now,
         "max_attempts": max_attempts, "status": "queued", "attempts": 0, "created_at": now}
        for kind, payload, dedupe_key, run_at, max_attempts in rows
    ]
    jobs = Job.__table__
    stmt = dialect_insert(session)(jobs).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(jobs.c.id)
    return len((await session.execute(stmt, values)).all())


async def claim(
    session: AsyncSession, worker_id: str, *, limit: int = 1, lease_s: float = 120.0
) -> list[ClaimedJob]:
    """Take up to ``limit`` due jobs for ``worker_id``. Commit right after.

    Due jobs are read in (status, run_at) index order; jobs whose worker died
    (lease expired) are picked up by a second, rarely non-empty, query.
    """
    now = utcnow()
    queued = (
        select(Job.id)
        .where(Job.status == "queued", Job.run_at <= now)
        .order_by(Job.run_at, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    jobs = await _take(session, queued, worker_id, now, lease_s)
    if len(jobs) < limit:
        abandoned = (
            select(Job.id)
            .where(Job.status == "running", Job.locked_until < now)
            .order_by(Job.locked_until)
            .limit(limit - len(jobs))
            .with_for_update(skip_locked=True)
        )
        jobs += await _take(session, abandoned, worker_id, now, lease_s)
    return sorted(jobs, key=lambda j: j.id)


async def _take(session: AsyncSession, ids: Any, worker_id: str, now: datetime, lease_s: float) -> list[ClaimedJob]:
    stmt = (
        update(Job)
        .where(Job.id.in_(ids.scalar_subquery()))
        .values(
            status="running",
            attempts=Job.attempts + 1,
            locked_until=now + timedelta(seconds=lease_s),
            locked_by=worker_id,
        )
        .returning(Job.id, Job.kind, Job.payload, Job.attempts, Job.max_attempts)
        .execution_options(synchronize_session=False)
    )
    return [ClaimedJob(*row) for row in (await session.execute(stmt)).all()]


async def complete(session: AsyncSession, job_id: int, worker_id: str) -> None:
    await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.locked_by == worker_id)
        .values(status="done", finished_at=utcnow(), locked_until=None, last_error=None)
    )


async def complete_many(session: AsyncSession, job_ids: list[int], worker_id: str) -> None:
    """Mark a batch of jobs done in one statement (only those this worker still holds)."""
    if job_ids:
        await session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.locked_by == worker_id, Job.status == "running")
            .values(status="done", finished_at=utcnow(), locked_until=None, last_error=None)
            .execution_options(synchronize_session=False)
        )


async def renew(session: AsyncSession, job_ids: list[int], worker_id: str, lease_s: float) -> int:
    """Extend the lease of jobs this worker still runs; returns how many it still holds."""
    if not job_ids:
        return 0
    result = await session.execute(
        update(Job)
        .where(Job.id.in_(job_ids), Job.locked_by == worker_id, Job.status == "running")
        .values(locked_until=utcnow() + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


async def release(session: AsyncSession, job_ids: list[int], worker_id: str) -> int:
    """Give back jobs this worker claimed but will not finish (shutdown): due at once,
    the attempt not counted, so another worker takes them without waiting for the lease."""
    if not job_ids:
        return 0
    result = await session.execute(
        update(Job)
        .where(Job.id.in_(job_ids), Job.locked_by == worker_id, Job.status == "running")
        .values(status="queued", attempts=Job.attempts - 1, run_at=utcnow(), locked_until=None, locked_by=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def backoff_seconds(attempts: int) -> float:
    """2, 4, 8 ... seconds (capped), with jitter so retries do not march in step."""
    base = min(MAX_BACKOFF_S, 2.0**attempts)
    return base * random.uniform(0.8, 1.2)


async def fail(
    session: AsyncSession,
    job: ClaimedJob,
    worker_id: str,
    error: str,
    *,
    retry_after: float | None = None,
    permanent: bool = False,
) -> str:
    """Record a failure: retry later, or park the job as dead. Returns the new status."""
    dead = permanent or job.attempts >= job.max_attempts
    delay = retry_after if retry_after is not None else backoff_seconds(job.attempts)
    values: dict[str, Any] = {"last_error": error[:4000], "locked_until": None}
    if dead:
        values.update(status="dead", finished_at=utcnow())
    else:
        values.update(status="queued", run_at=utcnow() + timedelta(seconds=delay))
    await session.execute(
        update(Job).where(Job.id == job.id, Job.locked_by == worker_id).values(**values)
    )
    return "dead" if dead else "queued"


async def postpone(session: AsyncSession, job: ClaimedJob, worker_id: str, delay_s: float, why: str) -> None:
    """Put a job back without counting the attempt (the platform asked us to wait)."""
    await session.execute(
        update(Job)
        .where(Job.id == job.id, Job.locked_by == worker_id)
        .values(
            status="queued",
            attempts=Job.attempts - 1,
            run_at=utcnow() + timedelta(seconds=delay_s),
            locked_until=None,
            last_error=why[:4000],
        )
    )


async def retry_dead(session: AsyncSession, job_id: int) -> bool:
    """Send a dead job back to the queue with a fresh set of attempts."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "dead")
        .values(status="queued", attempts=0, run_at=utcnow(), finished_at=None)
    )
    return bool(result.rowcount)


async def stats(session: AsyncSession) -> dict[str, Any]:
    """Jobs per status, and the age in seconds of the oldest due job."""
    counts = dict((await session.execute(select(Job.status, func.count()).group_by(Job.status))).all())
    oldest = await session.scalar(
        select(func.min(Job.run_at)).where(Job.status == "queued", Job.run_at <= utcnow())
    )
    age = (utcnow() - oldest).total_seconds() if oldest else 0.0
    return {"counts": counts, "oldest_due_age_s": age}
