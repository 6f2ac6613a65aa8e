"""Job queue throughput: enqueue N no-op jobs, then drain them with W worker processes.

    .venv/bin/python bench/queue_bench.py [--jobs 5000] [--workers 2] [--concurrency 4]
                                          [--no-sqlite] [--pg [URL]] [--json]

SQLite: a fresh database file in a temporary folder (schema by ``bot.store.db.upgrade``).
PostgreSQL (``--pg``, default URL postgresql://postgres@127.0.0.1:5432/test): a fresh schema
selected with the ``options=-csearch_path=...`` URL parameter, as tests/conftest.py does,
upgraded with Alembic and dropped at the end.

Enqueue: ``bot.pipeline.queue.enqueue`` (with a dedupe key, as the pipeline does), 100 jobs
per transaction. Drain: W processes (like W ``relais worker``), each one
``bot.pipeline.worker.Worker`` with a no-op handler and ``--concurrency`` jobs per claim
(the default worker_concurrency is 4), started together behind a barrier; each runs
``Worker.drain()`` (claim, run, complete) until nothing is due. Reported: jobs/s claimed
and completed (N / wall time from the first start to the last finish), and a check that
every job ended ``done`` exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import emit, machine

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
ENQUEUE_BATCH = 100


async def _noop(payload: dict[str, Any]) -> None:
    return None


async def _enqueue(url: str, n: int) -> float:
    from bot.pipeline import queue
    from bot.store import db

    engine = db.create_engine(url)
    sessions = db.sessionmaker(engine)
    try:
        start = time.perf_counter()
        for first in range(0, n, ENQUEUE_BATCH):
            async with sessions.begin() as session:
                for i in range(first, min(n, first + ENQUEUE_BATCH)):
                    await queue.enqueue(session, "noop", {"i": i}, dedupe_key=f"bench:{i}")
        return time.perf_counter() - start
    finally:
        await engine.dispose()


async def _drain(url: str, worker_id: str, concurrency: int, barrier: Any) -> tuple[int, float, float]:
    from sqlalchemy import text

    from bot.pipeline.worker import Worker
    from bot.store import db

    engine = db.create_engine(url)
    sessions = db.sessionmaker(engine)
    try:
        async with engine.connect() as conn:  # open the pool before the clock starts
            await conn.execute(text("SELECT 1"))
        worker = Worker(sessions, {"noop": _noop}, worker_id=worker_id, concurrency=concurrency)
        await asyncio.to_thread(barrier.wait)
        start = time.time()
        handled = await worker.drain(max_rounds=10**9)
        return handled, start, time.time()
    finally:
        await engine.dispose()


def _drain_process(url: str, worker_id: str, concurrency: int, barrier: Any, out: Any) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    out.put(asyncio.run(_drain(url, worker_id, concurrency, barrier)))


async def _counts(url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from bot.store import db
    from bot.store.models import Job

    engine = db.create_engine(url)
    try:
        async with db.sessionmaker(engine)() as session:
            rows = (await session.execute(select(Job.status, func.count()).group_by(Job.status))).all()
            attempts = await session.scalar(select(func.max(Job.attempts)))
        return {**{str(s): int(c) for s, c in rows}, "max_attempts_seen": int(attempts or 0)}
    finally:
        await engine.dispose()


def bench_backend(name: str, url: str, jobs: int, workers: int, concurrency: int) -> dict[str, Any]:
    from bot.store import db

    db.upgrade(url)
    enqueue_s = asyncio.run(_enqueue(url, jobs))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_drain_process, args=(url, f"bench-{name}-{w}", concurrency, barrier, out))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    handled = sum(r[0] for r in results)
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    counts = asyncio.run(_counts(url))
    return {
        "backend": name,
        "jobs": jobs,
        "workers": workers,
        "concurrency": concurrency,
        "enqueue_s": round(enqueue_s, 3),
        "enqueue_jobs_per_s": round(jobs / enqueue_s),
        "drain_s": round(wall, 3),
        "drain_jobs_per_s": round(handled / wall) if wall > 0 else None,
        "handled": handled,
        "per_worker": [r[0] for r in results],
        "status_counts": counts,
        "all_done_once": counts.get("done") == jobs and handled == jobs and counts["max_attempts_seen"] == 1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=5000, help="no-op jobs (5000)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    ap.add_argument("--concurrency", type=int, default=4, help="jobs per claim per worker (4)")
    ap.add_argument("--no-sqlite", action="store_true", help="skip SQLite")
    ap.add_argument("--pg", nargs="?", const=DEFAULT_PG, default=None,
                    help=f"also PostgreSQL at this URL (default {DEFAULT_PG})")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    backends: list[dict[str, Any]] = []
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="relais-bench-queue-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'queue.db'}"
            backends.append(bench_backend("sqlite", url, args.jobs, args.workers, args.concurrency))
    if args.pg:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(args.pg, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            sep = "&" if "?" in args.pg else "?"
            url = f"{args.pg}{sep}options=-csearch_path%3D{schema}"
            backends.append(bench_backend("postgresql", url, args.jobs, args.workers, args.concurrency))
        finally:
            with psycopg.connect(args.pg, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')

    result = {"bench": "queue", "backends": backends, **machine()}
    summary = [(f"queue: {args.jobs} no-op jobs, {args.workers} worker processes x "
               f"{args.concurrency} jobs per claim (load average {result['loadavg_1m']})")]
    for b in backends:
        summary.append(
            f"  {b['backend']:<10} enqueue {b['enqueue_jobs_per_s']:>6,} jobs/s   "
            f"claim+complete {b['drain_jobs_per_s']:>6,} jobs/s ({b['drain_s']} s, "
            f"per worker {b['per_worker']}, all done once: {b['all_done_once']})"
        )
    emit(result, args.json, summary)


if __name__ == "__main__":
    main()
