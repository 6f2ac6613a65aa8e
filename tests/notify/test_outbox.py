"""The outbox and the SLA schedule, through the real worker, database and an SMTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.demo.mailcatcher import MailCatcher
from bot.domain import Author, InboundItem, ItemKind, Platform
from bot.ingest.store_items import store_items
from bot.pipeline.flow import handlers
from bot.pipeline.worker import Worker
from bot.services import Services, open_services
from bot.store import db
from bot.store.models import Channel, Email, Item, Job, utcnow
from tests.conftest import free_port, make_settings

RULES = """
community_manager: cm@example.org
experts:
  - {name: Chloé, email: chloe@example.org, language: fr, timezone: America/Montreal}
  - {name: Camille CM, email: cm@example.org, language: fr}
rules:
  - name: Plaintes
    when: {category: complaint}
    assign: chloe@example.org
    sla: 6s
  - name: Le reste
    when: {}
    assign: chloe@example.org
    sla: 6s
  - {name: défaut, default: true}
"""


@pytest.fixture
async def stack(tmp_path: Path, database_url: str, models_dir: Path) -> AsyncIterator[tuple[Services, Worker, int]]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    port = free_port()
    settings = make_settings(tmp_path, database_url, models_dir, rules_file=rules, smtp_url=f"smtp://127.0.0.1:{port}")
    if not db.is_sqlite(database_url):
        db.upgrade(database_url)
    async with open_services(settings) as services:
        worker = Worker(services.sessions, handlers(services), concurrency=2)
        async with services.sessions.begin() as session:
            session.add(Channel(platform="facebook", external_id="42", name="Boulangerie", credentials={"page_token": "t"}))
        yield services, worker, port


async def _ingest(services: Services, text: str, age_s: float = 0) -> int:
    item = InboundItem(
        platform=Platform.FACEBOOK,
        external_id=f"42_1_{abs(hash(text)) % 10**8}",
        kind=ItemKind.COMMENT,
        channel_external_id="42",
        author=Author(id="7", name="Julie"),
        text=text,
        created_time=utcnow() - timedelta(seconds=age_s),
    )
    async with services.sessions.begin() as session:
        channel = await session.scalar(select(Channel))
        result = await store_items(session, channel, [item], source="webhook")
    return result.new[0]


async def _make_due(services: Services) -> None:
    """Jobs waiting for their backoff or their SLA step run now (instead of sleeping in a test)."""
    async with services.sessions.begin() as session:
        await session.execute(update(Job).where(Job.status == "queued").values(run_at=utcnow()))


async def test_smtp_down_then_up_delivers_each_mail_once(stack: tuple[Services, Worker, int]) -> None:
    services, worker, port = stack
    item_id = await _ingest(services, "Mon gâteau était rassis, je suis très déçue 😡")
    await worker.drain()  # classify, route, notify; SMTP is down: send_email fails and waits
    async with services.sessions() as session:
        email = await session.scalar(select(Email).where(Email.kind == "notification"))
        job = await session.scalar(select(Job).where(Job.kind == "send_email"))
    assert email is not None and email.status == "queued" and email.attempts == 1
    assert "Connect" in (email.last_error or "") or "refused" in (email.last_error or "").lower()
    assert job is not None and job.status == "queued" and job.run_at > utcnow()  # backoff, not dropped

    catcher = MailCatcher()
    await catcher.start(port=port)
    try:
        async with services.sessions.begin() as session:  # only the notification, not the SLA steps
            await session.execute(update(Job).where(Job.kind == "send_email").values(run_at=utcnow()))
        await worker.drain()
        await worker.drain()
        assert [m["Message-ID"] for m in catcher.messages] == [email.message_id]
        assert "rassis" in catcher.messages[0].get_body(("plain",)).get_content()
    finally:
        await catcher.stop()
    async with services.sessions() as session:
        sent = await session.get(Email, email.id)
        item = await session.get(Item, item_id)
    assert sent is not None and sent.status == "sent" and sent.sent_at is not None
    assert item is not None and item.status == "notified"


async def test_an_unreachable_smtp_server_is_tried_once_per_batch_not_once_per_mail(stack: tuple[Services, Worker, int]) -> None:
    services, worker, port = stack
    connections = 0

    async def busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.write(b"421 4.3.2 try again later\r\n")  # a greeting that refuses the session
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(busy, "127.0.0.1", port)
    try:
        texts = [f"Commande {n} arrivée en retard et froide, service client injoignable, je suis furieuse 😡" for n in range(6)]
        items = [
            InboundItem(platform=Platform.FACEBOOK, external_id=f"42_9_{n}", kind=ItemKind.COMMENT, channel_external_id="42",
                        author=Author(id=str(n), name="Julie"), text=text, created_time=utcnow())
            for n, text in enumerate(texts)
        ]
        async with services.sessions.begin() as session:  # one delivery: one batch through every stage
            await store_items(session, await session.scalar(select(Channel)), items, source="webhook")
        await worker.drain()
    finally:
        server.close()
        await server.wait_closed()
    async with services.sessions() as session:
        emails = (await session.scalars(select(Email).where(Email.kind == "notification"))).all()
        jobs = (await session.scalars(select(Job).where(Job.kind == "send_email"))).all()
    assert len(emails) >= 2
    assert connections == 1  # the batch met the refusal once; each mail alone would have met it again
    assert {e.status for e in emails} == {"queued"} and {e.attempts for e in emails} == {1}
    assert all("421" in (e.last_error or "") for e in emails)
    assert {j.status for j in jobs} == {"queued"} and all(j.run_at > utcnow() and "421" in (j.last_error or "") for j in jobs)


async def test_reminders_then_escalation_to_the_community_manager(stack: tuple[Services, Worker, int]) -> None:
    services, worker, port = stack
    catcher = MailCatcher()
    await catcher.start(port=port)
    try:
        await _ingest(services, "Livraison en retard de deux heures, personne ne répond au téléphone")
        await worker.drain()
        async with services.sessions() as session:
            steps = (await session.scalars(select(Job).where(Job.kind == "sla_check").order_by(Job.run_at))).all()
        assert [j.payload["step"] for j in steps] == [0, 1, 2]
        assert steps[0].run_at < steps[1].run_at < steps[2].run_at  # 50 %, 75 %, 100 % of 6 s
        await _make_due(services)
        await worker.drain()
        kinds = {(m["To"], m["Subject"].split(" · ")[0]) for m in catcher.messages}
        assert ("chloe@example.org", "[Relais] Rappel") in kinds
        assert ("cm@example.org", "[Relais] Escalade") in kinds
        async with services.sessions() as session:
            mails = (await session.scalars(select(Email).order_by(Email.id))).all()
        assert [m.kind for m in mails] == ["notification", "reminder", "reminder", "escalation"]
    finally:
        await catcher.stop()


async def test_no_reminder_once_the_item_is_answered(stack: tuple[Services, Worker, int]) -> None:
    services, worker, port = stack
    catcher = MailCatcher()
    await catcher.start(port=port)
    try:
        item_id = await _ingest(services, "Le pain était froid et rassis ce matin, très déçue, je veux un remboursement 😡")
        await worker.drain()
        async with services.sessions.begin() as session:
            item = await session.get(Item, item_id)
            assert item is not None
            item.status = "answered"
        await _make_due(services)
        await worker.drain()
        await asyncio.sleep(0)
        assert len(catcher.messages) == 1  # the notification only: no reminder, no escalation
        assert not catcher.messages[0]["Subject"].startswith(("[Relais] Rappel", "[Relais] Escalade"))
    finally:
        await catcher.stop()


async def test_an_edit_after_notification_is_relabelled_without_a_second_expert_mail(stack: tuple[Services, Worker, int]) -> None:
    from bot.domain import ChangeVerb
    from bot.store.models import Assignment, Classification

    services, worker, port = stack
    catcher = MailCatcher()
    await catcher.start(port=port)
    try:
        text = "Le pain était froid et rassis ce matin, très déçue, je veux un remboursement 😡"
        item_id = await _ingest(services, text)
        await worker.drain()
        async with services.sessions() as session:
            item = await session.get(Item, item_id)
        assert item is not None and item.status == "notified"
        edited = InboundItem(
            platform=Platform.FACEBOOK, external_id=item.external_id, kind=ItemKind.COMMENT, channel_external_id="42",
            author=Author(id="7", name="Julie"), text="Finalement c'était délicieux, merci 😍", created_time=item.created_time,
            verb=ChangeVerb.EDIT,
        )
        async with services.sessions.begin() as session:
            await store_items(session, await session.scalar(select(Channel)), [edited], source="webhook")
        await worker.drain()
        async with services.sessions() as session:
            item = await session.get(Item, item_id)
            labels = (await session.scalars(select(Classification).where(Classification.item_id == item_id))).all()
            assignments = (await session.scalars(select(Assignment).where(Assignment.item_id == item_id))).all()
            notifications = (await session.scalars(select(Email).where(Email.kind == "notification"))).all()
        assert item is not None and item.text.startswith("Finalement") and item.status == "notified"
        assert len(labels) == 2  # classified again, for the record and the reply page
        assert len(assignments) == 1 and len(notifications) == 1  # same expert, same link, no second mail
    finally:
        await catcher.stop()
