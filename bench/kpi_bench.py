"""KPIs for one week out of 1,000,000 stored items, on SQLite.

    .venv/bin/python bench/kpi_bench.py [--items 1000000] [--db PATH] [--json]

Builds (or reuses, with --db of an existing file) a database of N items spread
over 52 weeks and stored in time order (as they arrive in production), with their labels, assignments, replies and KPI events, written
with executemany inside one transaction. Then times ``compute_kpis`` for one
week (2026-W20): the first run also computes the business-hours seconds of the
week's events (once per event); the next runs are the steady state. Also times
``--by expert`` and ``--by category``. Goal: < 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import machine, peak_rss_mb

from bot.kpi.calendar import BusinessCalendar
from bot.kpi.report import compute_kpis
from bot.kpi.schedule import week_bounds
from bot.store import db

FIRST_DAY = datetime(2025, 11, 24, tzinfo=UTC)  # 52 weeks, up to 2026-11-23
WEEK = "2026-W20"
LABELS = ("complaint", "product_feedback", "ad_reaction", "other")
PLATFORMS = (("facebook", "comment"), ("facebook", "post"), ("instagram", "comment"), ("x", "mention"))
FMT = "%Y-%m-%d %H:%M:%S.%f"


def ts(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).strftime(FMT)


def generate(path: Path, n: int, seed: int = 7) -> float:
    """Fill a migrated SQLite file with ``n`` items and their history. Returns seconds taken."""
    started = time.perf_counter()
    db.upgrade(f"sqlite:///{path}")
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    span = 52 * 7 * 86400
    with conn:
        conn.executemany("INSERT INTO teams (id, name) VALUES (?, ?)", [(1, "Qualité"), (2, "Produits")])
        conn.executemany(
            "INSERT INTO experts (id, name, email, language, timezone, skills, available, team_id) "
            "VALUES (?, ?, ?, 'fr', 'Europe/Paris', '[]', 1, ?)",
            [(e, f"Expert {e}", f"expert{e}@example.com", 1 + e % 2) for e in range(1, 9)],
        )
        conn.executemany(
            "INSERT INTO channels (id, platform, external_id, name, credentials_ref, credentials, status, "
            "poll_interval_s, cursor, created_at) VALUES (?, ?, ?, ?, 'db', '{}', 'active', 60, '{}', ?)",
            [(c + 1, p, f"page{c}", f"Page {c}", ts(FIRST_DAY)) for c, (p, _) in enumerate(PLATFORMS)],
        )
        items, labels, assignments, responses, kpis = [], [], [], [], []
        # rows arrive in time order, as in production (ids grow with created_time)
        offsets = sorted(rng.random() * span for _ in range(n))
        for i in range(1, n + 1):
            created = FIRST_DAY + timedelta(seconds=offsets[i - 1])
            c = rng.randrange(4)
            platform, kind = PLATFORMS[c]
            lag = rng.uniform(1, 120)
            label = LABELS[rng.randrange(4)]
            answered = rng.random() < 0.7
            source = "poll" if rng.random() < 0.1 else "webhook"
            items.append((i, c + 1, platform, f"e{i}", kind, f"a{i % 50000}", "", "", "…", rng.choice(("fr", "en")),
                          ts(created), ts(created + timedelta(seconds=lag)), "{}", 0, 0,
                          "answered" if answered else "notified", source, 0, 0, 0))
            labels.append((i, label, 0.8, "m1", "model", "[]", ts(created)))
            if rng.random() < 0.03:
                labels.append((i, LABELS[(LABELS.index(label) + 1) % 4], 1.0, "m1", "human", "[]", ts(created)))
            kpis.append(("ingest_lag_s", i, None, c + 1, lag, ts(created + timedelta(seconds=lag))))
            if rng.random() < 0.9:
                expert = 1 + rng.randrange(8)
                assigned = created + timedelta(seconds=lag + rng.uniform(0.5, 5))
                sla = created + timedelta(hours=rng.choice((2, 8, 24)))
                assignments.append((i, expert, "r", "v1", "public", ts(sla), "[]", ts(assigned)))
                kpis.append(("time_to_assignment_s", i, expert, c + 1, (assigned - created).total_seconds(), ts(assigned)))
                if answered:
                    sent = created + timedelta(seconds=min(rng.lognormvariate(8, 1.3), 14 * 86400))
                    mode = "private" if rng.random() < 0.3 else "public"
                    responses.append((i, expert, mode, "merci", f"k{i}", "sent", ts(sent), ts(sent)))
                    seconds = (sent - created).total_seconds()
                    kpis.append(("first_response_s", i, expert, c + 1, seconds, ts(sent)))
                    if mode == "public":
                        kpis.append(("public_ack_s", i, expert, c + 1, seconds, ts(sent)))
                    kpis.append(("expert_response_s", i, expert, c + 1, (sent - assigned).total_seconds(), ts(sent)))
            if len(items) >= 50_000 or i == n:
                conn.executemany(
                    "INSERT INTO items (id, channel_id, platform, external_id, kind, author_id, author_name, "
                    "author_handle, text, language, created_time, received_at, raw, is_brand_post, is_ad, status, "
                    "source, is_hidden, is_spam, in_crisis) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", items)
                conn.executemany(
                    "INSERT INTO classifications (item_id, label, confidence, model_version, source, explanation, "
                    "created_at) VALUES (?,?,?,?,?,?,?)", labels)
                conn.executemany(
                    "INSERT INTO assignments (item_id, expert_id, rule_name, rules_version, reply_mode, sla_due, "
                    "trace, assigned_at) VALUES (?,?,?,?,?,?,?,?)", assignments)
                conn.executemany(
                    "INSERT INTO responses (item_id, expert_id, mode, text, idempotency_key, status, created_at, "
                    "sent_at) VALUES (?,?,?,?,?,?,?,?)", responses)
                conn.executemany(
                    "INSERT INTO kpi_events (name, item_id, expert_id, channel_id, seconds, at, detail) "
                    "VALUES (?,?,?,?,?,?,'{}')", kpis)
                items, labels, assignments, responses, kpis = [], [], [], [], []
    conn.execute("ANALYZE")
    conn.close()
    return time.perf_counter() - started


async def measure(path: Path, runs: int) -> dict[str, object]:
    engine = db.create_engine(f"sqlite:///{path}")
    sessions = db.sessionmaker(engine)
    start, end = week_bounds(WEEK, "Europe/Paris")
    calendar = BusinessCalendar.from_config("Europe/Paris")
    as_of = datetime(2026, 11, 24, tzinfo=UTC)
    timings: dict[str, list[float]] = {"week": [], "by_expert": [], "by_category": []}
    received = 0
    try:
        for _ in range(runs):
            for key, by in (("week", None), ("by_expert", "expert"), ("by_category", "category")):
                async with sessions.begin() as session:
                    t0 = time.perf_counter()
                    result = await compute_kpis(session, start, end, by=by, calendar=calendar, as_of=as_of)
                    timings[key].append(time.perf_counter() - t0)
                if by is None:
                    assert isinstance(result, dict)
                    received = int(result["received"])
    finally:
        await engine.dispose()
    return {"timings_s": {k: [round(v, 3) for v in vs] for k, vs in timings.items()}, "week_items": received}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="reuse this SQLite file if it exists, else build it there")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cold", action="store_true",
                        help="with --db: forget the business-hours seconds first, so the first run computes them")
    args = parser.parse_args()
    folder = tempfile.TemporaryDirectory()
    path = args.db or Path(folder.name) / "kpi_bench.db"
    built = None
    if not path.exists():
        built = round(generate(path, args.items), 1)
    if args.cold and built is None:
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE kpi_events SET business_seconds = NULL")
    figures = asyncio.run(measure(path, args.runs))
    result = {"bench": "kpi", "items": args.items, "week": WEEK, "build_s": built, **figures,
              "peak_rss_mb": round(peak_rss_mb(), 1), **machine()}
    if args.json:
        print(json.dumps(result))
    else:
        t = figures["timings_s"]
        print(f"database: {args.items:,} items ({'built in %ss' % built if built else 'reused'}), {path}")
        print(f"week {WEEK}: {figures['week_items']:,} items")
        for key, values in t.items():  # type: ignore[union-attr]
            print(f"  compute_kpis {key:12} first {values[0]:.2f} s, then {', '.join(f'{v:.2f}' for v in values[1:])} s")
        print(f"peak RSS {result['peak_rss_mb']} MB, load {result['loadavg_1m']}; goal < 5 s")
    folder.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
