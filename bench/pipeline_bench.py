"""Whole-pipeline throughput on PostgreSQL with W ``relais worker`` processes.

    .venv/bin/python bench/pipeline_bench.py [--items 2000] [--workers 2] [--concurrency 64]
                                             [--pg URL] [--models-dir DIR] [--json]

A fresh PostgreSQL schema (``options=-csearch_path=...``), migrated, one connected
Facebook Page, a rules file that sends complaints to an expert and the rest to triage,
and a local SMTP server in this process that only counts the mails (``_common.MailSink``). The W workers are
started first and left idle; then N comments are stored as webhook deliveries of 100
comments each (what ``POST /webhooks/facebook`` leaves) in one transaction, and the clock
runs until no job is due or running: every item ingested, classified, routed, and for the
routed ones notified and mailed. Reported: items/s (N / that time), jobs/s, emails sent.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import ROOT, MailSink, clean_up_on_sigterm, emit, machine

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


async def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import psycopg
    from sqlalchemy import func, select

    from bot.services import open_services
    from bot.settings import Secret, load_settings
    from bot.store import db
    from bot.store.models import Email, Item, Job
    from tests.cli.relais_runner import make_relais
    from tests.reliability.helpers import TRIAGE_RULES as RULES, Proc, add_channel, feed_delivery, job_counts, store_deliveries, worker_env

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{args.pg}{'&' if '?' in args.pg else '?'}options=-csearch_path%3D{schema}"
    catcher = MailSink()
    smtp_port = await catcher.start()
    rules = tmp / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    models_dir = args.models_dir or tmp / "models"
    procs: list[Proc] = []
    try:
        await asyncio.to_thread(db.upgrade, url)
        settings = load_settings(env={}, data_dir=tmp / "data", database_url=url, models_dir=models_dir, rules_file=rules,
                                 secret_key=Secret("bench-secret-key-0123456789"), smtp_url=f"smtp://127.0.0.1:{smtp_port}")
        async with open_services(settings) as services:  # trains the model once if needed
            await add_channel(services, "facebook", "555", "Bench Page", credentials={"page_token": "t"})
            env = worker_env(make_relais(tmp / "w", url, models_dir).env, smtp_url=f"smtp://127.0.0.1:{smtp_port}",
                             worker_concurrency=str(args.concurrency), worker_batch=str(args.batch), rules_file=str(rules),
                             fb_app_secret="bench-app-secret", fb_verify_token="bench-verify-token")
            procs = [Proc(["worker"], env, tmp, tmp / f"worker{n}.log") for n in range(args.workers)]
            deadline = time.monotonic() + 180
            while not all(re.search(r"worker \S+ started", p.output()) for p in procs):
                assert time.monotonic() < deadline, "workers did not start"
                await asyncio.sleep(0.2)
            bodies = [feed_delivery("555", n, 100) for n in range(0, args.items, 100)]
            start = time.perf_counter()
            await store_deliveries(services, bodies)
            while True:
                counts = await job_counts(services)
                if not counts.get("queued") and not counts.get("running"):
                    break
                await asyncio.sleep(0.1)
            elapsed = time.perf_counter() - start
            async with services.sessions() as session:
                items = await session.scalar(select(func.count()).select_from(Item))
                jobs_done = await session.scalar(select(func.count()).where(Job.status == "done"))
                dead = await session.scalar(select(func.count()).where(Job.status == "dead"))
                emails = await session.scalar(select(func.count()).where(Email.status == "sent"))
    finally:
        for proc in procs:
            proc.close()
        await catcher.stop()
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return {
        "bench": "pipeline",
        "items": items,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "batch": args.batch,
        "seconds": round(elapsed, 2),
        "items_per_s": round(args.items / elapsed, 1),
        "jobs_done": jobs_done,
        "jobs_per_s": round(jobs_done / elapsed, 1),
        "dead_jobs": dead,
        "emails_sent": emails,
        "emails_caught": len(set(catcher.message_ids)),
        "mail_bytes_mean": round(sum(catcher.sizes) / len(catcher.sizes)) if catcher.sizes else 0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=2000, help="comments, a multiple of 100 (2000)")
    ap.add_argument("--workers", type=int, default=2, help="relais worker processes (2)")
    ap.add_argument("--batch", type=int, default=64, help="RELAIS_WORKER_BATCH: jobs of one batch kind per claim (64)")
    ap.add_argument("--concurrency", type=int, default=16, help="RELAIS_WORKER_CONCURRENCY of each (16)")
    ap.add_argument("--pg", default=DEFAULT_PG, help=f"PostgreSQL URL ({DEFAULT_PG})")
    ap.add_argument("--models-dir", type=Path, help="classifier models (default: train into a temp folder)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="relais-bench-pipeline-") as tmp:
        clean_up_on_sigterm()
        result = {**machine(), **asyncio.run(bench(args, Path(tmp)))}
    emit(result, args.json, [
        f"pipeline: {result['items']} items, {result['workers']} workers x {result['concurrency']} "
        f"(load average {result['loadavg_1m']})",
        f"  {result['items_per_s']:,} items/s, {result['jobs_per_s']:,} jobs/s ({result['seconds']} s, "
        f"{result['jobs_done']} jobs done, {result['dead_jobs']} dead, {result['emails_sent']} emails sent, "
        f"{result['emails_caught']} caught, {result['mail_bytes_mean']} bytes each on average)",
    ])


if __name__ == "__main__":
    if str(ROOT) not in __import__("sys").path:
        __import__("sys").path.insert(0, str(ROOT))
    main()
