"""The worker: claims jobs and runs the stage handler named by each job's kind.

At-least-once delivery with idempotent stages: a handler may run again after a
crash, so every stage checks what is already done before doing it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import ChannelError, RateLimited, TokenInvalid
from bot.pipeline import queue
from bot.pipeline.queue import ClaimedJob

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]

#: A channel whose token is dead keeps its jobs; they are looked at again after this delay.
TOKEN_INVALID_RECHECK_S = 300.0


class PermanentFailure(Exception):
    """Raised by a stage when retrying cannot help: the job goes straight to dead."""


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
    ) -> None:
        self.sessions = sessions
        self.handlers = dict(handlers)
        self.worker_id = worker_id or default_worker_id()
        self.concurrency = concurrency
        self.idle_sleep_s = idle_sleep_s
        self.lease_s = lease_s
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Tell an idle worker that new jobs are waiting."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

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
        """Claim one batch and run it. Returns how many jobs were handled."""
        async with self.sessions.begin() as session:
            jobs = await queue.claim(session, self.worker_id, limit=self.concurrency, lease_s=self.lease_s)
        if jobs:
            await asyncio.gather(*(self._run(job) for job in jobs))
        return len(jobs)

    async def drain(self, max_rounds: int = 10_000) -> int:
        """Run until no job is due (tests and one-shot commands). Returns jobs handled."""
        total = 0
        for _ in range(max_rounds):
            handled = await self.run_once()
            if not handled:
                break
            total += handled
        return total

    async def _run(self, job: ClaimedJob) -> None:
        handler = self.handlers.get(job.kind)
        try:
            if handler is None:
                raise PermanentFailure(f"no handler for job kind {job.kind!r}")
            if job.attempts > job.max_attempts:
                raise PermanentFailure("lease expired too many times (worker crashes?)")
            await handler(job.payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
            await self._record_failure(job, exc)
        else:
            async with self.sessions.begin() as session:
                await queue.complete(session, job.id, self.worker_id)

    async def _record_failure(self, job: ClaimedJob, exc: Exception) -> None:
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
