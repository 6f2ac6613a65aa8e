"""Three ``relais worker`` processes share one PostgreSQL queue over many items (10,000 in
the full run), and one of them is killed with SIGKILL mid-batch and replaced: nothing is
lost or stuck, each stage's effect happens once per item, only the dead worker's jobs run
twice, every email reaches the SMTP server.

The items arrive as stored webhook deliveries (100 comments each, as ``POST
/webhooks/facebook`` leaves them), so the workers run every stage: ingest, classify,
route, and for complaints notify and send_email to a local SMTP server; the rest goes
to triage. CI runs 1,000 items (each costs a few ms of CPU over its stages: 10,000 take
minutes on 2 cores); ``RELAIS_TEST_SCALE_ITEMS=10000`` runs the full count (a multiple of 100).
"""

from __future__ import annotations

import collections
import os
import socket
from pathlib import Path

from sqlalchemy import func, select

from bot.demo.mailcatcher import MailCatcher
from bot.pipeline.flow import payload_ids
from bot.services import open_services
from bot.store import db
from bot.store.models import Assignment, Classification, Delivery, Email, Item, Job
from tests.conftest import make_settings
from tests.reliability.helpers import (
    TRIAGE_RULES,
    Proc,
    add_channel,
    base_env,
    eventually,
    feed_delivery,
    settled,
    store_deliveries,
    worker_env,
)

ITEMS = int(os.environ.get("RELAIS_TEST_SCALE_ITEMS", "1000"))
WORKERS = 3
PER_DELIVERY = 100  # comments per webhook delivery (Meta batches updates too)


async def test_three_workers_one_killed_midway_process_every_item_once(
    tmp_path: Path, pg_url: str, models_dir: Path
) -> None:
    catcher = MailCatcher()
    smtp_port = await catcher.start()
    env = worker_env(base_env(tmp_path / "w", pg_url, models_dir), smtp_url=f"smtp://127.0.0.1:{smtp_port}",
                     worker_concurrency="16", worker_lease="20", fb_app_secret="test-app-secret", fb_verify_token="test-verify-token")
    rules = tmp_path / "rules.yaml"
    rules.write_text(TRIAGE_RULES, encoding="utf-8")
    env["RELAIS_RULES_FILE"] = str(rules)
    settings = make_settings(tmp_path, pg_url, models_dir, rules_file=rules)
    db.upgrade(pg_url)
    procs: list[Proc] = []
    try:
        async with open_services(settings) as services:  # trains the shared model once, before the workers load it
            await add_channel(services, "facebook", "555", "Page", credentials={"page_token": "t"})
            await store_deliveries(services, [feed_delivery("555", n, PER_DELIVERY) for n in range(0, ITEMS, PER_DELIVERY)])
            procs = [Proc(["worker"], env, tmp_path, tmp_path / f"worker{n}.log") for n in range(WORKERS)]

            async def classified() -> bool:
                async with services.sessions() as session:
                    return (await session.scalar(select(func.count()).select_from(Classification)) or 0) >= ITEMS // 4

            # a quarter of the way: SIGKILL a worker in the middle of its batch, start a replacement
            await eventually(classified, timeout=600, interval=0.2)
            host = socket.gethostname()

            async def busy_worker() -> tuple[Proc, str] | None:
                async with services.sessions() as session:
                    holders = set((await session.scalars(select(Job.locked_by).where(Job.status == "running"))).all())
                return next(((p, f"{host}:{p.pid}") for p in procs if f"{host}:{p.pid}" in holders), None)

            victim, victim_id = await eventually(busy_worker, timeout=120, interval=0.02)
            victim.kill()
            async with services.sessions() as session:
                held = (await session.execute(
                    select(Job.id, Job.kind, Job.payload).where(Job.status == "running", Job.locked_by == victim_id))).all()
                in_flight = {job_id for job_id, _, _ in held}
                mail_ids = payload_ids([payload for _, kind, payload in held if kind == "send_email"], "email_id")
                lost_mail = set((await session.scalars(select(Email.message_id).where(Email.id.in_(mail_ids)))).all())
            procs.append(Proc(["worker"], env, tmp_path, tmp_path / "worker-replacement.log"))
            counts = await settled(services, timeout=600, procs=[p for p in procs if p is not victim])
            assert counts.get("dead", 0) == 0

            async with services.sessions() as session:
                statuses = dict((await session.execute(select(Item.status, func.count()).group_by(Item.status))).all())
                per_item = {
                    model.__name__: collections.Counter(
                        (await session.execute(select(model.item_id, func.count()).group_by(model.item_id))).all()
                    )
                    for model in (Classification, Assignment)
                }
                n_classified = await session.scalar(select(func.count(func.distinct(Classification.item_id))))
                n_assigned = await session.scalar(select(func.count(func.distinct(Assignment.item_id))))
                claimed_twice = dict((await session.execute(
                    select(Job.id, Job.attempts).where(Job.status == "done", Job.attempts != 1))).all())
                by_worker = dict(
                    (await session.execute(
                        select(Job.locked_by, func.count()).group_by(Job.locked_by)
                    )).all()
                )
                emails = (await session.execute(select(Email.message_id, Email.status))).all()
                unread = await session.scalar(select(func.count()).where(Delivery.processed_at.is_(None)))
    finally:
        for proc in procs:
            proc.close()
        await catcher.stop()

    assert unread == 0  # every delivery was read
    # every item went all the way: to an expert's inbox, or to triage
    assert set(statuses) <= {"notified", "triage"}, statuses
    assert sum(statuses.values()) == ITEMS
    assert n_classified == ITEMS and n_assigned == ITEMS
    # each stage ran once per item: one label, one assignment (a second run would add a row)
    assert set(per_item["Classification"].values()) == {1} and set(per_item["Assignment"].values()) == {1}
    # only the jobs the killed worker held were claimed twice (once more, after its lease)
    assert set(claimed_twice) <= in_flight and set(claimed_twice.values()) <= {2}, (claimed_twice, in_flight)
    # the three workers shared the work (the replacement may find little left to do)
    assert len(by_worker) >= WORKERS, by_worker
    # each notification was written once and reached the SMTP server; a second copy (same
    # Message-ID, so mail servers drop it) only for a mail the killed worker was sending
    assert len(emails) == statuses.get("notified", 0) > 0
    assert {status for _, status in emails} == {"sent"}
    received = collections.Counter(m["Message-ID"] for m in catcher.messages)
    assert set(received) == {message_id for message_id, _ in emails}
    assert {m for m, n in received.items() if n > 1} <= lost_mail
