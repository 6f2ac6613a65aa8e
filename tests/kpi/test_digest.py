"""The weekly digest: rendered in French and English, sent once through a real SMTP server,
and neither sent twice nor skipped across a restart."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.demo.mailcatcher import MailCatcher
from bot.kpi.digest import build_digest, schedule_digests, send_digest
from bot.notify.outbox import send_email
from bot.pipeline.flow import handlers
from bot.services import Services, open_services
from bot.settings import Settings
from bot.store import db
from bot.store.importer import import_records, read_file
from bot.store.models import DigestRun, Email, Job
from tests.conftest import free_port, make_settings

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).with_name("scenario.jsonl")
WEEK = "2026-W43"  # Monday 19 - Sunday 25 October 2026, the scenario's week
AS_OF = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)  # Monday 2 November, 08:00 in Paris
KPI_FILE = """
digest:
  schedule: "MON 08:00"
  recipients: [direction@boulangerie-doree.example]
"""


@pytest.fixture
def kpi_settings(tmp_path: Path, database_url: str, models_dir: Path) -> Settings:
    rules = (ROOT / "routing_rules.yaml").read_text(encoding="utf-8").replace(
        "\nrules:\n",
        "\nteams:\n  - name: Qualité\n    members: [chloe.qualite@boulangerie-doree.example]\n"
        "    lead: chloe.qualite@boulangerie-doree.example\n\nrules:\n",
    )
    (tmp_path / "rules.yaml").write_text(rules, encoding="utf-8")
    (tmp_path / "kpi.yaml").write_text(KPI_FILE, encoding="utf-8")
    if not db.is_sqlite(database_url):
        db.upgrade(database_url)
    return make_settings(tmp_path, database_url, models_dir, rules_file=tmp_path / "rules.yaml",
                         kpi_file=tmp_path / "kpi.yaml")


async def _import(services: Services) -> None:
    async with services.sessions.begin() as session:
        await import_records(session, read_file(SCENARIO))


async def test_rendered_in_french_and_english(kpi_settings: Settings) -> None:
    async with open_services(kpi_settings, load_model=False) as services:
        await _import(services)
        async with services.sessions.begin() as session:
            fr = await build_digest(services, session, WEEK, language="fr", as_of=AS_OF)
            en = await build_digest(services, session, WEEK, language="en", as_of=AS_OF)
    assert fr.subject.startswith("[Relais] Bilan de la semaine 2026-W43")
    assert en.subject.startswith("[Relais] Week 2026-W43 digest")
    for digest, words in ((fr, ("En bref", "Délais dépassés (5)", "Plaintes publiques sans réponse")),
                          (en, ("At a glance", "SLA breaches (5)", "Public complaints unanswered after 24 h"))):
        for word in words:
            assert word in digest.html and word in digest.text
        assert set(digest.images) == {"distribution", "sla", "volumes"}
        assert all(png.startswith(b"\x89PNG") for png in digest.images.values())
        assert 'src="cid:distribution"' in digest.html and "data:image" not in digest.html
        assert "/ui/items/" in digest.html  # breaches link to the item
        assert "Team Qualité" in digest.html or "Équipe Qualité" in digest.html
    # D, the only public complaint without an answer, is listed; A (answered) is not
    unanswered = fr.text.split("Plaintes publiques sans réponse")[1].split("Par expert")[0]
    assert "D: toujours pas" in unanswered and "A: tarte" not in unanswered
    assert "data:image/png;base64," in fr.html_with_data_uris()


async def test_sent_once_with_inline_charts_and_caught_up_after_a_restart(kpi_settings: Settings) -> None:
    catcher = MailCatcher()
    port = await catcher.start(port=free_port())
    settings = replace(kpi_settings, smtp_url=f"smtp://127.0.0.1:{port}")
    try:
        async with open_services(settings, load_model=False) as services:
            await _import(services)
            ids = await send_digest(services, WEEK, as_of=AS_OF)
            assert len(ids) == 2  # the decision-maker (everything) and the Qualité team's lead
            assert await send_digest(services, WEEK, as_of=AS_OF) == []  # the week is taken
            for email_id in ids:
                await send_email(services, email_id)
                await send_email(services, email_id)  # a retried job sends nothing more
        assert sorted(m["To"] for m in catcher.messages) == [
            "chloe.qualite@boulangerie-doree.example", "direction@boulangerie-doree.example"]
        message = next(m for m in catcher.messages if m["To"].startswith("direction"))
        assert message["Message-ID"].startswith("<relais.digest.2026-W43.")
        html_part = message.get_body(("html",))
        assert "cid:distribution" in html_part.get_content()
        images = [p for p in message.walk() if p.get_content_type() == "image/png"]
        assert sorted(p["Content-ID"] for p in images) == ["<distribution>", "<sla>", "<volumes>"]
        assert "Bilan de la semaine" in message.get_body(("plain",)).get_content()

        # a "restart" two weeks later: W44 and W45 are due, W43 is not sent again
        async with open_services(settings, load_model=False) as services:
            now = datetime(2026, 11, 9, 7, 30, tzinfo=UTC)  # Monday 9 November, 08:30 in Paris
            async with services.sessions.begin() as session:
                assert await schedule_digests(services, session, now) == ["2026-W44", "2026-W45"]
            async with services.sessions.begin() as session:  # the next tick queues nothing new
                await schedule_digests(services, session, now + timedelta(seconds=1))
                jobs = (await session.scalars(select(Job.payload).where(Job.kind == "digest"))).all()
            assert sorted(p["week"] for p in jobs) == ["2026-W44", "2026-W45"]
            run = handlers(services)["digest"]  # the job kind, as the worker runs it
            for week in ("2026-W44", "2026-W44", "2026-W45"):  # a job run twice
                await run({"week": week})
            async with services.sessions() as session:
                weeks = (await session.scalars(select(DigestRun.week).order_by(DigestRun.week))).all()
                digests = await session.scalar(select(func.count()).select_from(Email).where(Email.kind == "digest"))
                assert await schedule_digests(services, session, now) == []
        assert weeks == ["2026-W43", "2026-W44", "2026-W45"]
        assert digests == 6
    finally:
        await catcher.stop()


async def test_the_poll_scheduler_queues_the_due_digest_and_the_crisis_check(kpi_settings: Settings) -> None:
    import asyncio

    from bot.ingest.poller import schedule_polls
    from bot.kpi.schedule import week_of

    kpi_settings.kpi_file.write_text(KPI_FILE + "crisis:\n  enabled: true\n", encoding="utf-8")  # type: ignore[union-attr]
    async with open_services(kpi_settings, load_model=False) as services:
        stop = asyncio.Event()
        task = asyncio.create_task(schedule_polls(services, stop, tick_s=0.05))
        try:
            for _ in range(200):
                async with services.sessions() as session:
                    kinds = set((await session.scalars(select(Job.kind))).all())
                if {"digest", "crisis_check"} <= kinds:
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await task
        async with services.sessions() as session:
            weeks = (await session.scalars(select(Job.payload).where(Job.kind == "digest"))).all()
    # a new installation queues only the latest week whose Monday 08:00 has passed
    today = datetime.now(UTC)
    assert [p["week"] for p in weeks] in ([week_of((today - timedelta(days=7)).date())],
                                          [week_of((today - timedelta(days=14)).date())])
    assert "crisis_check" in kinds
