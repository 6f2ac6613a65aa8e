"""The worker: claims jobs and runs the stage handler named by each job's kind.

At-least-once delivery with idempotent stages: a handler may run again after a
crash, so every stage checks what is already done before doing it.

A stage's next step does not wait in the queue: the jobs a handler queues for a batch
kind (classify, route, notify, send_email) are written already claimed by this worker
(:class:`queue.Handoff`) and run as soon as the handler returns, in the same round. An
item thus goes from ingest to its expert's mail in one round of one worker, with the
same durable job rows (and leases) as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import ChannelError, RateLimited, TokenInvalid
from bot.pipeline import queue
from bot.pipeline.queue import ClaimedJob
from bot.web import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchHandler:
    """A stage that handles many jobs of its kind in one call (one query per batch, not per item).

    The worker calls ``run`` once with the payloads of all the jobs of that kind it claimed
    together. If the call fails and there were several, each job is run again alone, so a
    failure (retry, backoff, dead letter) is recorded on the job it belongs to."""

    run: Callable[[list[dict[str, Any]]], Awaitable[None]]


Handler = Callable[[dict[str, Any]], Awaitable[None]] | BatchHandler

#: A channel whose token is dead keeps its jobs; they are looked at again after this delay.
TOKEN_INVALID_RECHECK_S = 300.0

#: On shutdown, jobs in hand get this long to finish before they are cancelled and released.
#: Longer than a platform call's time-out (30 s): a reply call is never abandoned mid-flight
#: (it could still land after another worker has checked the platform and sent it again).
SHUTDOWN_GRACE_S = 35.0


@dataclass
class _Round:
    """The jobs of one claim and those handed off while it runs."""

    pending: set[int]  # in hand: their leases are renewed; released if the round is cancelled
    succeeded: list[int] = field(default_factory=list)
    handed_off: int = 0


class PermanentFailure(Exception):
    """Raised by a stage when retrying cannot help: the job goes straight to dead."""


class BatchFailed(Exception):
    """Raised by a batch stage for a failure that is not about any one of its jobs (the
    SMTP server cannot be reached): the worker records ``cause`` on every job of the call
    at once, instead of running each job alone to meet the same failure once per job
    (with a server that does not answer, once per job a full time-out)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        handlers: Mapping[str, Handler],
        *,
        worker_id: str | None = None,
        concurrency: int = 4,
        idle_sleep_s: float = 0.25,
        lease_s: float = 120.0,
        batch_limit: int = 64,
        hand_off: bool = True,
    ) -> None:
        self.sessions = sessions
        self.handlers = dict(handlers)
        self.worker_id = worker_id or default_worker_id()
        self.concurrency = concurrency
        self.idle_sleep_s = idle_sleep_s
        self.lease_s = lease_s
        self.batch_limit = batch_limit
        self.batch_kinds = frozenset(k for k, h in self.handlers.items() if isinstance(h, BatchHandler))
        self._wake = asyncio.Event()
        self._stopping = False
        #: kinds whose jobs, queued by a handler, this worker runs at once (see queue.Handoff)
        self.hand_off_kinds = self.batch_kinds if hand_off else frozenset()

    def wake(self) -> None:
        """Tell an idle worker that new jobs are waiting."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def shutdown(self, task: asyncio.Task[None], grace_s: float) -> None:
        """Stop ``task`` (running :meth:`run`): let the batch in hand finish for up to
        ``grace_s`` seconds, then cancel it, which releases its unfinished jobs."""
        self.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), grace_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        """Claim and run jobs until :meth:`stop` (finishes the batch in hand)."""
        log.info("worker %s started", self.worker_id)
        while not self._stopping:
            handled = await self.run_once()
            if not handled:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.idle_sleep_s)
                except TimeoutError:
                    pass
        log.info("worker %s stopped", self.worker_id)

    async def run_once(self) -> int:
        """Claim one batch and run it. Returns how many jobs were handled.

        While the batch runs, its leases are renewed every quarter of ``lease_s``,
        so a long job is not taken by another worker. The jobs that succeed are
        marked done together, in one transaction. If the batch is cancelled
        (shutdown), the finished jobs are still marked done and the others are
        released at once, for another worker to take. Keep ``concurrency`` below
        the database pool's size, so that the renewal always finds a connection.
        """
        async with self.sessions.begin() as session:
            jobs = await queue.claim(session, self.worker_id, limit=self.concurrency, lease_s=self.lease_s,
                                     batch_kinds=self.batch_kinds, batch_limit=self.batch_limit)
        if not jobs:
            return 0
        batch = _Round({job.id for job in jobs})
        renewer = asyncio.create_task(self._renew(batch.pending), name="relais-lease-renewal")
        groups: dict[str, list[ClaimedJob]] = defaultdict(list)
        singles: list[ClaimedJob] = []
        for job in jobs:
            if isinstance(self.handlers.get(job.kind), BatchHandler) and job.attempts <= job.max_attempts:
                groups[job.kind].append(job)
            else:
                singles.append(job)
        runs = [self._run(job, batch) for job in singles]
        runs += [self._run_group(group, batch) for group in groups.values()]
        try:
            await asyncio.gather(*runs)
        except asyncio.CancelledError:
            await self._settle(batch.succeeded, sorted(batch.pending))
            raise
        finally:
            renewer.cancel()
        await self._settle(batch.succeeded, [])
        return len(jobs) + batch.handed_off

    async def _settle(self, succeeded: list[int], unfinished: list[int]) -> None:
        async with self.sessions.begin() as session:
            await queue.complete_many(session, succeeded, self.worker_id)
            released = await queue.release(session, unfinished, self.worker_id)
        if unfinished:
            log.info("worker %s released %d unfinished job(s) %s", self.worker_id, released, unfinished)

    async def _renew(self, pending: set[int]) -> None:
        delay = self.lease_s / 4
        while True:
            await asyncio.sleep(delay)
            ids = sorted(pending)
            try:
                async with self.sessions.begin() as session:
                    held = await queue.renew(session, ids, self.worker_id, self.lease_s)
            except Exception:  # noqa: BLE001 - the database is away or the pool busy: try again soon
                log.warning("worker %s could not renew its leases", self.worker_id, exc_info=True)
                delay = min(1.0, self.lease_s / 4)
                continue
            delay = self.lease_s / 4
            if held < len(ids):
                log.warning("worker %s lost the lease of %d job(s)", self.worker_id, len(ids) - held)

    async def drain(self, max_rounds: int = 10_000) -> int:
        """Run until no job is due (tests and one-shot commands). Returns jobs handled."""
        total = 0
        for _ in range(max_rounds):
            handled = await self.run_once()
            if not handled:
                break
            total += handled
        return total

    async def _run_group(self, group: list[ClaimedJob], batch: _Round) -> None:
        """Jobs of one batch kind: one call for all; if it fails, each job alone (a
        ``BatchFailed``: its cause recorded on each job, none run alone)."""
        if len(group) > 1:
            handler = self.handlers[group[0].kind]
            assert isinstance(handler, BatchHandler)
            try:
                handed = await self._call(lambda: handler.run([job.payload for job in group]), batch)
            except asyncio.CancelledError:
                raise
            except BatchFailed as exc:
                for job in group:
                    await self._record_failure(job, exc.cause)
                    batch.pending.discard(job.id)
                return
            except Exception as exc:  # noqa: BLE001 - each job is run again alone below
                log.warning("batch of %d %s jobs failed (%r): running each alone", len(group), group[0].kind, exc)
            else:
                for job in group:
                    batch.pending.discard(job.id)
                    batch.succeeded.append(job.id)
                await self._run_handed_off(handed, batch)
                return
        for job in group:
            await self._run(job, batch)

    async def _run(self, job: ClaimedJob, batch: _Round) -> None:
        handler = self.handlers.get(job.kind)
        try:
            if handler is None:
                raise PermanentFailure(f"no handler for job kind {job.kind!r}")
            if job.attempts > job.max_attempts:
                raise PermanentFailure("lease expired too many times (worker crashes?)")
            if isinstance(handler, BatchHandler):
                handed = await self._call(lambda: handler.run([job.payload]), batch)
            else:
                handed = await self._call(lambda: handler(job.payload), batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
            await self._record_failure(job, exc.cause if isinstance(exc, BatchFailed) else exc)
            batch.pending.discard(job.id)
        else:
            batch.pending.discard(job.id)
            batch.succeeded.append(job.id)
            await self._run_handed_off(handed, batch)

    async def _call(self, run: Callable[[], Awaitable[None]], batch: _Round) -> list[ClaimedJob]:
        """``run`` a handler; returns the jobs it handed to this worker. If it fails, those
        (written only if its transaction committed) are released to the queue."""
        handoff = queue.Handoff(self.worker_id, self.lease_s, self.hand_off_kinds, batch.pending.add)
        with queue.handing_off(handoff):
            try:
                await run()
            except asyncio.CancelledError:
                raise  # the round releases everything still pending
            except Exception:
                await self._give_back(handoff.jobs, batch)
                raise
        return handoff.jobs

    async def _run_handed_off(self, jobs: list[ClaimedJob], batch: _Round) -> None:
        """The next stage's jobs, one batch per kind, in this worker's slot (during a
        shutdown they go back to the queue instead)."""
        if self._stopping:
            await self._give_back(jobs, batch)
            return
        batch.handed_off += len(jobs)
        by_kind: dict[str, list[ClaimedJob]] = defaultdict(list)
        for job in jobs:
            by_kind[job.kind].append(job)
        for group in by_kind.values():
            await self._run_group(group, batch)

    async def _give_back(self, jobs: list[ClaimedJob], batch: _Round) -> None:
        if not jobs:
            return
        ids = [job.id for job in jobs]
        batch.pending.difference_update(ids)
        try:
            async with self.sessions.begin() as session:
                await queue.release(session, ids, self.worker_id)
        except Exception:  # noqa: BLE001 - their leases run out and another worker takes them
            log.warning("worker %s could not release handed-off jobs %s", self.worker_id, ids, exc_info=True)

    async def _record_failure(self, job: ClaimedJob, exc: Exception) -> None:
        metrics.job_failed(job.kind, exc)  # /metrics: failures, platform and SMTP errors
        error = f"{type(exc).__name__}: {exc}"
        async with self.sessions.begin() as session:
            if isinstance(exc, RateLimited):
                await queue.postpone(session, job, self.worker_id, exc.retry_after, error)
                status = f"postponed {exc.retry_after:.0f}s"
            elif isinstance(exc, TokenInvalid):
                await queue.postpone(session, job, self.worker_id, TOKEN_INVALID_RECHECK_S, error)
                status = "held (token invalid)"
            else:
                permanent = isinstance(exc, PermanentFailure)
                status = await queue.fail(session, job, self.worker_id, error, permanent=permanent)
        level = logging.WARNING if isinstance(exc, ChannelError | PermanentFailure) else logging.ERROR
        log.log(
            level,
            "job %s (%s) attempt %s failed, %s: %r",
            job.id,
            job.kind,
            job.attempts,
            status,
            error,
            exc_info=level == logging.ERROR,
        )
