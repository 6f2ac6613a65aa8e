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
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.db import dialect_insert
from bot.store.models import Job, utcnow

MAX_BACKOFF_S = 15 * 60

#: most ids one job of a batch stage names (:func:`enqueue_chunks`), and most ids a worker
#: hands itself per kind and stage call (:class:`Handoff`): a large delivery becomes several
#: jobs that other workers can take, while a small one runs through at once
IDS_PER_JOB = 100


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int


@dataclass
class Handoff:
    """Jobs a worker hands itself while a stage runs (see :func:`handing_off`).

    A job of one of ``kinds`` that is due at once is written already claimed by
    ``worker_id`` (status ``running``, one attempt, a lease of ``lease_s``), in the
    stage's own transaction, and listed in ``jobs``: the worker runs it as soon as the
    stage returns, without a claim and without waiting in the queue. The row is the
    same durable record as a queued job: if the worker dies, the lease runs out and
    another worker takes it. ``on_create`` is told each id as it is written (the
    worker renews its lease, and releases it if the stage is cancelled)."""

    worker_id: str
    lease_s: float
    kinds: frozenset[str]
    on_create: Callable[[int], None] | None = None
    jobs: list[ClaimedJob] = field(default_factory=list)
    budget: int = IDS_PER_JOB  # ids per kind; a job beyond it is queued for any worker (the first is always taken)
    taken: Counter[str] = field(default_factory=Counter)

    def takes(self, kind: str, payload: dict[str, Any], due: bool) -> bool:
        """Whether this job goes to the worker (and then counts its ids against the budget)."""
        size = job_size(payload)
        if not due or kind not in self.kinds or (self.taken[kind] and self.taken[kind] + size > self.budget):
            return False
        self.taken[kind] += size
        return True


def job_size(payload: dict[str, Any]) -> int:
    """How many ids a job names (its ``*_ids`` lists), at least 1."""
    return max(1, sum(len(v) for k, v in payload.items() if k.endswith("_ids") and isinstance(v, list)))


_handoff: ContextVar[Handoff | None] = ContextVar("relais_job_handoff", default=None)


@contextmanager
def handing_off(handoff: Handoff) -> Iterator[Handoff]:
    """Within the block (a worker running a stage), jobs queued for ``handoff.kinds``
    go to ``handoff.jobs`` instead of the queue."""
    token = _handoff.set(handoff)
    try:
        yield handoff
    finally:
        _handoff.reset(token)


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
    enqueue of the same key does nothing (returns False). Inside a worker's
    :func:`handing_off`, a due job of a handed-off kind is written claimed by it."""
    return await enqueue_many(session, [(kind, payload, dedupe_key, run_at, max_attempts)]) == 1


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
    handoff = _handoff.get()
    holder, lease = (handoff.worker_id, now + timedelta(seconds=handoff.lease_s)) if handoff else (None, None)
    values = []
    for kind, payload, dedupe_key, run_at, max_attempts in rows:
        mine = handoff is not None and handoff.takes(kind, payload, run_at is None or run_at <= now)
        values.append({
            "kind": kind, "payload": payload, "dedupe_key": dedupe_key, "run_at": run_at or now,
            "max_attempts": max_attempts, "created_at": now, "status": "running" if mine else "queued",
            "attempts": 1 if mine else 0, "locked_by": holder if mine else None,
            "locked_until": lease if mine else None,
        })
    jobs = Job.__table__
    stmt = (
        dialect_insert(session)(jobs)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(jobs.c.id, jobs.c.kind, jobs.c.payload, jobs.c.status, jobs.c.max_attempts)
    )
    added = (await session.execute(stmt, values)).all()
    if handoff is not None:
        for job_id, kind, payload, status, max_attempts in added:
            if status == "running":
                handoff.jobs.append(ClaimedJob(job_id, kind, payload, 1, max_attempts))
                if handoff.on_create is not None:
                    handoff.on_create(job_id)
    return len(added)


async def enqueue_chunks(
    session: AsyncSession, kind: str, key: str, ids: list[int], dedupe_prefix: str,
    extra: dict[str, Any] | None = None, key_ids: list[int] | None = None,
) -> int:
    """Jobs of ``kind`` for ``ids``, at most :data:`IDS_PER_JOB` ids each (``{key: [...]}``
    plus ``extra``), each deduplicated on ``{dedupe_prefix}:{first id}`` (or the first of
    its ``key_ids``, aligned with ``ids``). Returns how many jobs were added."""
    keys = key_ids or ids
    return await enqueue_many(session, [
        (kind, {key: ids[start:start + IDS_PER_JOB], **(extra or {})}, f"{dedupe_prefix}:{keys[start]}", None, 8)
        for start in range(0, len(ids), IDS_PER_JOB)
    ])


async def claim(
    session: AsyncSession,
    worker_id: str,
    *,
    limit: int = 1,
    lease_s: float = 120.0,
    batch_kinds: frozenset[str] = frozenset(),
    batch_limit: int = 0,
) -> list[ClaimedJob]:
    """Take up to ``limit`` due jobs for ``worker_id``. Commit right after.

    Due jobs are read in (status, run_at) index order; jobs whose worker died
    (lease expired) are picked up by a second, rarely non-empty, query. When the
    jobs taken include kinds of ``batch_kinds`` (run many per call) and more are due,
    more jobs of those kinds are taken: up to half of that kind's due jobs (the other
    workers share the rest), at most ``batch_limit`` jobs and about :data:`IDS_PER_JOB`
    ids of each kind in all. A burst of one-comment deliveries is then handled as a few
    large batches, not many small ones.
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
    counts = Counter(job.kind for job in jobs if job.kind in batch_kinds)
    sizes: Counter[str] = Counter()
    for job in jobs:
        sizes[job.kind] += job_size(job.payload)
    for kind, count in sorted(counts.items()):
        if count >= batch_limit or sizes[kind] >= IDS_PER_JOB or len(jobs) < limit:
            continue  # large enough already, or all that was due fitted in the first claim
        due = select(Job.id).where(Job.status == "queued", Job.run_at <= now, Job.kind == kind)
        waiting = int(await session.scalar(select(func.count()).select_from(due.limit(2 * batch_limit).subquery())) or 0)
        room = (IDS_PER_JOB - sizes[kind]) * count // sizes[kind]  # jobs of the same size as those taken
        share = min(batch_limit, (count + waiting + 1) // 2, count + room) - count  # others get half of what waits
        if share > 0:
            more = due.order_by(Job.run_at, Job.id).limit(share).with_for_update(skip_locked=True)
            jobs += await _take(session, more, worker_id, now, lease_s)
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
