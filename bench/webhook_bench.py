"""Webhook ingest: signed Facebook deliveries acknowledged per second, Relais vs a bare handler.

    .venv/bin/python bench/webhook_bench.py [--duration 10] [--concurrency 16] [--rounds 1]
                                            [--models-dir DIR] [--tool python|wrk] [--json]

Three processes, all on 127.0.0.1:

* Relais: ``bot.app.create_app(settings, run_worker=False, run_scheduler=False)`` on a
  temporary SQLite database, with one Facebook channel row, served like ``relais serve``
  (AppRunner, no access log). ``POST /webhooks/facebook`` checks the signature, parses the
  JSON, stores the delivery and its ``ingest_delivery`` job in one transaction, answers 200.
  Without ``--models-dir`` a model is trained into a temporary folder first (about 10 s:
  ``open_services`` loads the classifier even though the worker is off).
* bare: an aiohttp handler that reads the body and answers 200 — the ceiling of the stack.
* the load client: ``--concurrency`` asyncio tasks on one aiohttp session, each sending
  signed one-update deliveries (``X-Hub-Signature-256``) back to back for ``--duration``
  seconds after a 1 s warm-up. Bare runs first, then Relais.

Reported: deliveries/s for each, the ratio Relais/bare, Relais ack latency p50/p99, and a
check that the database holds one delivery and one job per 200 the client counted.
``--rounds N`` runs N bare/Relais pairs in turn and reports the median ratio (a shared
machine's load changes from one run to the next).

``--tool wrk`` drives the servers with wrk instead (``apt-get install wrk``), using a
generated Lua script that POSTs one signed body, after a 1 s warm-up run against the same
server (not counted); the Python client is the default.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, emit, machine, percentile

APP_SECRET = "bench-app-secret"
PAGE_ID = "424242424242"
WARMUP_S = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def delivery(i: int) -> tuple[bytes, str]:
    """One signed Facebook feed delivery holding one comment."""
    now = int(time.time())
    body = json.dumps({"object": "page", "entry": [{
        "id": PAGE_ID, "time": now * 1000,
        "changes": [{"field": "feed", "value": {
            "from": {"id": str(10_000_000 + i), "name": f"Client {i}"},
            "item": "comment", "verb": "add",
            "post_id": f"{PAGE_ID}_1001", "parent_id": f"{PAGE_ID}_1001",
            "comment_id": f"1001_{i}", "created_time": now,
            "message": f"Le croissant n°{i} était rassis ce matin, très déçue 😡",
        }}],
    }]}).encode()
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, signature


# --- servers (each in its own process) ------------------------------------------------


async def serve_bare(port: int) -> None:
    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="EVENT_RECEIVED\n")

    app = web.Application()
    app.router.add_post("/webhooks/facebook", ok)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await _ready_then_wait()
    await runner.cleanup()


async def serve_relais(port: int, directory: Path, models_dir: Path) -> None:
    from aiohttp import web

    from bot.app import SERVICES, create_app
    from bot.settings import Secret, load_settings
    from bot.store.models import Channel

    settings = load_settings(
        env={},
        data_dir=directory / "data",
        database_url=f"sqlite:///{directory / 'relais.db'}",
        models_dir=models_dir,
        secret_key=Secret("bench-secret-key-0123456789"),
        fb_app_secret=Secret(APP_SECRET),
        fb_verify_token=Secret("bench-verify-token"),
        smtp_url="smtp://127.0.0.1:1",
        base_url=f"http://127.0.0.1:{port}",
    )
    app = create_app(settings, run_worker=False, run_scheduler=False)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with app[SERVICES].sessions.begin() as session:
        session.add(Channel(platform="facebook", external_id=PAGE_ID, name="Bench Page",
                            credentials={"page_token": "bench-token"}, api_url="http://127.0.0.1:1"))
    await _ready_then_wait()
    await runner.cleanup()


async def _ready_then_wait() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    await stop.wait()


# --- load client (its own process) ---------------------------------------------------


async def client(url: str, duration: float, concurrency: int) -> dict[str, Any]:
    import aiohttp

    bodies = [delivery(i) for i in range(1000)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    counter = 0
    start = time.perf_counter()
    measure_from = start + WARMUP_S
    stop_at = measure_from + duration

    async def one_task(session: aiohttp.ClientSession) -> None:
        nonlocal errors, counter
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                return
            body, sig = bodies[counter % len(bodies)]
            counter += 1
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers={
                        "Content-Type": "application/json", "X-Hub-Signature-256": sig}) as resp:
                    await resp.read()
                    status = resp.status
            except aiohttp.ClientError:
                status = -1
            t1 = time.perf_counter()
            if t0 >= measure_from and t1 <= stop_at:
                if status == -1:
                    errors += 1
                else:
                    statuses[status] = statuses.get(status, 0) + 1
                    latencies.append((t1 - t0) * 1000)

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(one_task(session) for _ in range(concurrency)))
    latencies.sort()
    ok = statuses.get(200, 0)
    return {
        "requests": sum(statuses.values()),
        "ok": ok,
        "sent_total": counter,
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": errors,
        "per_s": round(ok / duration, 1),
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 2) if latencies else None,
        "max_ms": round(latencies[-1], 2) if latencies else None,
    }


def run_client(url: str, duration: float, concurrency: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--role", "client", "--url", url,
         "--duration", str(duration), "--concurrency", str(concurrency)],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=duration + 120,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_wrk(url: str, duration: float, concurrency: int, workdir: Path, warmup: float = WARMUP_S) -> dict[str, Any]:
    """wrk against ``url``: a ``warmup`` run first (not counted, as the Python client does), then the measure."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (or use --tool python)")
    body, sig = delivery(0)
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["X-Hub-Signature-256"] = "{sig}"\n',
        encoding="utf-8",
    )
    threads = min(2, concurrency)
    if warmup > 0:
        subprocess.run([wrk, f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(warmup))}s", "-s", str(script), url],
                       check=True, capture_output=True, text=True, timeout=warmup + 60)
    out = subprocess.run(
        [wrk, f"-t{threads}", f"-c{concurrency}", f"-d{int(duration)}s", "--latency",
         "-s", str(script), url],
        check=True, capture_output=True, text=True, timeout=duration + 60,
    ).stdout

    def ms(label: str) -> float | None:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if not m:
            return None
        return round(float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)], 2)

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "requests": int(total.group(1)) if total else None,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "per_s": float(rps.group(1)) if rps else None,
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
    }


# --- orchestration -------------------------------------------------------------------


def start_server(args: list[str], timeout: float = 180.0) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, __file__, *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == "READY":
            return proc
        if not line and proc.poll() is not None:
            raise RuntimeError(f"server {args} exited: {proc.stderr.read() if proc.stderr else ''}")
    proc.kill()
    raise RuntimeError(f"server {args} not ready after {timeout} s")


def stop_server(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="relais-bench-webhook-") as tmp:
        tmpdir = Path(tmp)
        models_dir = args.models_dir or tmpdir / "models"
        bare_port, relais_port = free_port(), free_port()
        procs = []
        try:
            t0 = time.perf_counter()
            relais = start_server(["--role", "relais", "--port", str(relais_port),
                                   "--dir", str(tmpdir), "--models-dir", str(models_dir)])
            procs.append(relais)
            relais_start_s = time.perf_counter() - t0
            bare = start_server(["--role", "bare", "--port", str(bare_port)])
            procs.append(bare)
            path = "/webhooks/facebook"
            bare_url, relais_url = (f"http://127.0.0.1:{port}{path}" for port in (bare_port, relais_port))
            rounds = []
            for _ in range(args.rounds):  # bare then Relais, each under the same load, round after round
                if args.tool == "wrk":
                    pair = [run_wrk(url, args.duration, args.concurrency, tmpdir) for url in (bare_url, relais_url)]
                else:
                    pair = [run_client(url, args.duration, args.concurrency) for url in (bare_url, relais_url)]
                ratio = pair[1]["per_s"] / pair[0]["per_s"] if pair[0].get("per_s") and pair[1].get("per_s") else None
                rounds.append({"bare": pair[0], "relais": pair[1], "ratio": round(ratio, 3) if ratio else None})
        finally:
            for proc in procs:
                stop_server(proc)
        with sqlite3.connect(tmpdir / "relais.db") as conn:
            deliveries = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
            jobs = conn.execute("SELECT count(*) FROM jobs WHERE kind = 'ingest_delivery'").fetchone()[0]
    # every 200 the load tool counted must be a stored delivery with its job (warm-ups store more)
    acked = sum(r["relais"]["ok"] if "ok" in r["relais"] else (r["relais"]["requests"] or 0) - r["relais"]["non_2xx"]
                for r in rounds)
    middle = sorted(rounds, key=lambda r: r["ratio"] or 0)[len(rounds) // 2]  # the median round
    return {
        "bench": "webhook",
        "tool": args.tool,
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "relais_startup_s": round(relais_start_s, 2),
        "bare": middle["bare"],
        "relais": middle["relais"],
        "ratio_relais_bare": middle["ratio"],
        "ratios": [r["ratio"] for r in rounds],
        "rounds": rounds,
        "stored_deliveries": deliveries,
        "stored_ingest_jobs": jobs,
        "acked_200": acked,
        "all_acked_stored": deliveries >= acked and jobs == deliveries,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per server (10)")
    ap.add_argument("--concurrency", type=int, default=16, help="requests in flight (16)")
    ap.add_argument("--models-dir", type=Path, help="classifier models (default: train into a temp folder)")
    ap.add_argument("--tool", choices=("python", "wrk"), default="python", help="load generator")
    ap.add_argument("--rounds", type=int, default=1, help="bare/Relais pairs run in turn; the median ratio is reported (1)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    # internal: the same script runs each server and the client in its own process
    ap.add_argument("--role", choices=("relais", "bare", "client"), help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.role == "bare":
        asyncio.run(serve_bare(args.port))
        return
    if args.role == "relais":
        asyncio.run(serve_relais(args.port, args.dir, args.models_dir))
        return
    if args.role == "client":
        print(json.dumps(asyncio.run(client(args.url, args.duration, args.concurrency))))
        return

    result = orchestrate(args)
    result.update(machine())
    b, r = result["bare"], result["relais"]
    summary = [
        (f"webhook ingest ({result['tool']} client, {args.concurrency} in flight, {args.duration:g} s each; "
        f"load average {result['loadavg_1m']})"),
        f"  bare aiohttp : {b['per_s']:>8,.0f} deliveries/s   p50 {b['p50_ms']} ms   p99 {b['p99_ms']} ms",
        f"  Relais       : {r['per_s']:>8,.0f} deliveries/s   p50 {r['p50_ms']} ms   p99 {r['p99_ms']} ms",
        (f"  ratio Relais/bare: {result['ratio_relais_bare']}"
         + (f" (median of {result['ratios']})" if len(result["ratios"]) > 1 else "")),
        (f"  stored: {result['stored_deliveries']} deliveries, {result['stored_ingest_jobs']} ingest jobs; "
         f"{result['acked_200']} 200s counted (warm-ups not counted), all stored: {result['all_acked_stored']}; "
         f"Relais statuses {r.get('statuses', {'non-2xx': r.get('non_2xx')})}; Relais start-up {result['relais_startup_s']} s"),
    ]
    emit(result, args.json, summary)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
