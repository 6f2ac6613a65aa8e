"""End to end at a steady rate: time from a webhook delivery to the expert's email queued.

    .venv/bin/python bench/e2e_bench.py [--rate 500] [--duration 60] [--drain 60]
                                        [--pg [URL]] [--workers N] [--models-dir DIR] [--json]

``relais serve`` (web server + worker, in its own process; SQLite in a temp folder, or a
fresh PostgreSQL schema with ``--pg``) with one Facebook Page and a rules file that sends
every item to one expert. This process sends signed ``feed`` webhooks, one new comment
each, at ``--rate`` per second for ``--duration`` seconds (open loop: a slow server does
not slow the sender), then waits up to ``--drain`` seconds for the pipeline to catch up.
``--workers N`` runs ``relais serve --no-worker`` and N ``relais worker`` processes instead
(the deployment docs/operations.md describes; meant with ``--pg``).
Latency of an item = ``emails.created_at`` of its notification (the email is queued in the
outbox) minus the moment its delivery was sent. Reported: sent/acknowledged deliveries,
emails queued, p50/p99/max latency (items still without an email at the end count as
"not queued" and are reported apart), and the rate actually achieved.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import re
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import ROOT, MailSink, clean_up_on_sigterm, emit, machine, percentile

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
APP_SECRET = "bench-app-secret"
PAGE = "555"
RULES = """
version: 1
community_manager: cm@example.com
defaults: {sla: 4h, reply_mode: public}
experts:
  - {name: Chloé, email: chloe@example.com, language: fr}
  - {name: Camille, email: cm@example.com, language: fr}
rules:
  - name: everything to Chloé
    default: true
    assign: chloe@example.com
"""


async def _send(url: str, rate: float, duration: float) -> tuple[dict[str, float], int, list[float], float]:
    import aiohttp

    from tests.reliability.helpers import feed_delivery

    sent: dict[str, float] = {}
    acks: list[float] = []
    ok = 0
    tasks: set[asyncio.Task[None]] = set()

    async def post(session: aiohttp.ClientSession, n: int) -> None:
        nonlocal ok
        body = feed_delivery(PAGE, n, 1)
        signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        sent[f"{PAGE}_1_{n}"] = time.time()
        t0 = time.perf_counter()
        async with session.post(url, data=body, headers={"Content-Type": "application/json",
                                                          "X-Hub-Signature-256": signature}) as response:
            await response.read()
            if response.status == 200:
                ok += 1
                acks.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        n = 0
        while (elapsed := time.perf_counter() - start) < duration:
            due = int(elapsed * rate) + 1
            while n < due:
                task = asyncio.create_task(post(session, n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.sleep(0.002)
        loop_s = time.perf_counter() - start
        await asyncio.gather(*tasks, return_exceptions=True)
    return sent, ok, acks, loop_s


async def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import psycopg
    from sqlalchemy import func, select

    from bot.services import open_services
    from bot.settings import Secret, load_settings
    from bot.store import db
    from bot.store.models import Email, Item
    from tests.cli.relais_runner import make_relais
    from tests.conftest import free_port
    from tests.reliability.helpers import Proc, add_channel, worker_env

    schema = None
    if args.pg:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{args.pg}{'&' if '?' in args.pg else '?'}options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{tmp / 'relais.db'}"
    catcher = MailSink()  # counts only: the demo's catcher would parse every mail on the same cores
    smtp_port = await catcher.start()
    rules = tmp / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    models_dir = args.models_dir or tmp / "models"
    port = free_port()
    server: Proc | None = None
    workers: list[Proc] = []
    try:
        await asyncio.to_thread(db.upgrade, url)
        settings = load_settings(env={}, data_dir=tmp / "data", database_url=url, models_dir=models_dir, rules_file=rules,
                                 secret_key=Secret("bench-secret-key-0123456789"), smtp_url=f"smtp://127.0.0.1:{smtp_port}")
        async with open_services(settings) as services:
            await add_channel(services, "facebook", PAGE, "Bench Page", credentials={"page_token": "t"},
                              api_url="http://127.0.0.1:1", poll_interval_s=86400.0)
            env = worker_env(make_relais(tmp / "w", url, models_dir).env, smtp_url=f"smtp://127.0.0.1:{smtp_port}",
                             rules_file=str(rules), port=str(port), fb_app_secret=APP_SECRET,
                             fb_verify_token="bench-verify-token", worker_concurrency=str(args.concurrency), worker_batch=str(args.batch))
            server = Proc(["serve", "--no-worker"] if args.workers else ["serve"], env, tmp, tmp / "serve.log")
            workers = [Proc(["worker"], env, tmp, tmp / f"worker{n}.log") for n in range(args.workers)]
            deadline = time.monotonic() + 180
            while not re.search(r"listening on", server.output()) or not all(
                    re.search(r"worker \S+ started", w.output()) for w in workers):
                assert time.monotonic() < deadline and server.popen.poll() is None, server.output()[-2000:]
                await asyncio.sleep(0.2)
            sent, acked, acks, send_s = await _send(f"http://127.0.0.1:{port}/webhooks/facebook", args.rate, args.duration)
            end = time.monotonic() + args.drain
            queued: dict[str, datetime] = {}
            triage = 0
            while time.monotonic() < end:
                async with services.sessions() as session:
                    rows = (await session.execute(
                        select(Item.external_id, Email.created_at).join(Email, Email.item_id == Item.id)
                        .where(Email.kind == "notification"))).all()
                    triage = await session.scalar(select(func.count()).where(Item.status == "triage"))
                queued = dict(rows)
                if len(queued) + triage >= acked:
                    break
                await asyncio.sleep(0.5)
    finally:
        for proc in [p for p in (server, *workers) if p is not None]:
            proc.terminate(timeout=60)
            proc.close()
        await catcher.stop()
        if schema:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    latencies = sorted((queued[k].replace(tzinfo=UTC).timestamp() if queued[k].tzinfo is None
                        else queued[k].timestamp()) - t for k, t in sent.items() if k in queued)
    ack_ms = sorted(a * 1000 for a in acks)
    ms = [x * 1000 for x in latencies]
    return {
        "bench": "e2e",
        "database": "postgresql" if args.pg else "sqlite",
        "worker_processes": args.workers,
        "target_rate": args.rate,
        "achieved_send_rate": round(len(sent) / send_s, 1),
        "duration_s": args.duration,
        "sent": len(sent),
        "acknowledged": acked,
        "emails_queued": len(queued),
        "triage_no_email": triage,  # below the review threshold: a person triages them, no email
        "not_queued_after_drain": acked - len(queued) - triage,
        "latency_ms_p50": round(percentile(ms, 50), 1) if ms else None,
        "latency_ms_p99": round(percentile(ms, 99), 1) if ms else None,
        "latency_ms_max": round(ms[-1], 1) if ms else None,
        "ack_ms_p50": round(percentile(ack_ms, 50), 1) if ack_ms else None,
        "ack_ms_p99": round(percentile(ack_ms, 99), 1) if ack_ms else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=500.0, help="deliveries (items) per second (500)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of sending (60)")
    ap.add_argument("--drain", type=float, default=60.0, help="seconds to wait for the last emails (60)")
    ap.add_argument("--batch", type=int, default=64, help="RELAIS_WORKER_BATCH: jobs of one batch kind per claim (64)")
    ap.add_argument("--concurrency", type=int, default=16, help="RELAIS_WORKER_CONCURRENCY (16)")
    ap.add_argument("--pg", nargs="?", const=DEFAULT_PG, default=None, help="PostgreSQL instead of SQLite")
    ap.add_argument("--workers", type=int, default=0, help="separate 'relais worker' processes (0: the one inside 'relais serve')")
    ap.add_argument("--models-dir", type=Path, help="classifier models (default: train into a temp folder)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="relais-bench-e2e-") as tmp:
        clean_up_on_sigterm()
        result = {**machine(), **asyncio.run(bench(args, Path(tmp)))}
    emit(result, args.json, [
        f"e2e ({result['database']}, {result['worker_processes'] or 'in-process'} worker(s)): target {result['target_rate']}/s for {result['duration_s']} s, "
        f"sent {result['achieved_send_rate']}/s (load average {result['loadavg_1m']})",
        f"  {result['acknowledged']}/{result['sent']} acknowledged (ack p50 {result['ack_ms_p50']} ms, "
        f"p99 {result['ack_ms_p99']} ms); {result['emails_queued']} emails queued, "
        f"{result['triage_no_email']} to triage (no email), {result['not_queued_after_drain']} not done after the drain",
        f"  delivery -> email queued: p50 {result['latency_ms_p50']} ms, p99 {result['latency_ms_p99']} ms, "
        f"max {result['latency_ms_max']} ms",
    ])


if __name__ == "__main__":
    import sys

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    main()
