"""Notify and send in batches: few statements per batch, one SMTP connection per batch,
each mail written and delivered once, even when a batch runs again."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from bot.demo.mailcatcher import MailCatcher
from bot.notify.outbox import notify_experts, send_emails
from bot.notify.smtp import SmtpUnavailable
from bot.pipeline.worker import BatchFailed, PermanentFailure
from bot.services import Services, open_services
from bot.store import db
from bot.store.models import Assignment, Channel, Classification, Email, Expert, Item, Job, ReplyLink, utcnow
from tests.conftest import free_port, make_settings

ServerFactory = Callable[..., contextlib.AbstractAsyncContextManager[int]]


@contextlib.asynccontextmanager
async def _services(tmp_path: Path, database_url: str, models_dir: Path, smtp_port: int) -> AsyncIterator[Services]:
    settings = make_settings(tmp_path, database_url, models_dir, smtp_url=f"smtp://127.0.0.1:{smtp_port}?timeout=5")
    if not db.is_sqlite(database_url):
        db.upgrade(database_url)
    async with open_services(settings) as services:
        yield services


async def _outbox(services: Services, addresses: list[str]) -> list[int]:
    async with services.sessions.begin() as session:
        emails = [
            Email(message_id=f"<batch.{n}.{abs(hash(address))}@relais.test>", kind="notification", to_address=address,
                  subject=f"[Relais] mail {n}", body_text=f"Bonjour {n} 🥐\n", body_html=f"<p>Bonjour {n}</p>")
            for n, address in enumerate(addresses)
        ]
        session.add_all(emails)
        await session.flush()
        return [email.id for email in emails]


async def _emails(services: Services, ids: list[int]) -> list[Email]:
    async with services.sessions() as session:
        return list((await session.scalars(select(Email).where(Email.id.in_(ids)).order_by(Email.id))).all())


class Recorder:
    """aiosmtpd handler: keeps each mail's Message-ID and the connection it came over;
    refuses the recipients in ``refuse`` with 550."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.refuse = refuse
        self.received: list[tuple[object, str]] = []  # (the connection's protocol, Message-ID)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        header = next(line for line in content.splitlines() if line.lower().startswith(b"message-id:"))
        self.received.append((server, header.split(b":", 1)[1].strip().decode()))
        return "250 OK"

    @property
    def connections(self) -> int:
        return len({id(server) for server, _ in self.received})  # the servers are kept alive: ids are distinct

    @property
    def message_ids(self) -> list[str]:
        return [message_id for _, message_id in self.received]


async def test_a_batch_goes_over_one_connection(
    tmp_path: Path, database_url: str, models_dir: Path, plain_smtp_server: ServerFactory
) -> None:
    recorder = Recorder()
    async with plain_smtp_server(recorder) as port, _services(tmp_path, database_url, models_dir, port) as services:
        ids = await _outbox(services, [f"expert{n}@example.org" for n in range(12)])
        announced: list[tuple[str, dict[str, object]]] = []
        services.listeners.append(lambda name, data: announced.append((name, data)))

        await send_emails(services, ids)
        await send_emails(services, ids)  # a retried batch sends nothing more

        emails = await _emails(services, ids)
    assert recorder.connections == 1
    assert sorted(recorder.message_ids) == sorted(e.message_id for e in emails)  # each once
    assert all(e.status == "sent" and e.sent_at is not None and e.attempts == 1 for e in emails)
    assert sorted(data["email_id"] for name, data in announced if name == "email.sent") == sorted(ids)


async def test_a_refused_recipient_fails_alone_and_a_rerun_sends_nothing_twice(
    tmp_path: Path, database_url: str, models_dir: Path, plain_smtp_server: ServerFactory
) -> None:
    recorder = Recorder(refuse=frozenset({"nobody@example.org"}))
    async with plain_smtp_server(recorder) as port, _services(tmp_path, database_url, models_dir, port) as services:
        ids = await _outbox(services, ["a@example.org", "nobody@example.org", "b@example.org", "c@example.org"])

        with pytest.raises(PermanentFailure, match="550"):
            await send_emails(services, ids)
        assert recorder.connections == 1
        # what the worker does after a failed batch: each job again, alone
        outcomes = []
        for email_id in ids:
            try:
                await send_emails(services, [email_id])
                outcomes.append("done")
            except PermanentFailure:
                outcomes.append("dead")
        emails = await _emails(services, ids)
    assert outcomes == ["done", "dead", "done", "done"]
    assert [e.status for e in emails] == ["sent", "failed", "sent", "sent"]
    assert "550" in (emails[1].last_error or "") and emails[1].sent_at is None
    sent = [e.message_id for e in emails if e.status == "sent"]
    assert sorted(recorder.message_ids) == sorted(sent)  # each once, the refused one never


async def test_server_down_then_up_delivers_each_mail_once(tmp_path: Path, database_url: str, models_dir: Path) -> None:
    port = free_port()
    async with _services(tmp_path, database_url, models_dir, port) as services:
        ids = await _outbox(services, [f"expert{n}@example.org" for n in range(5)])
        with pytest.raises(BatchFailed) as failed:  # the same failure for every mail: recorded on each job at once
            await send_emails(services, ids)
        assert isinstance(failed.value.cause, SmtpUnavailable)
        down = await _emails(services, ids)
        assert all(e.status == "queued" and e.attempts == 1 and "unreachable" in (e.last_error or "") for e in down)

        catcher = MailCatcher()
        await catcher.start(port=port)
        try:
            await send_emails(services, ids)
            await send_emails(services, ids)
        finally:
            await catcher.stop()
        up = await _emails(services, ids)
    assert sorted(m["Message-ID"] for m in catcher.messages) == sorted(e.message_id for e in up)
    assert all(e.status == "sent" and e.attempts == 2 for e in up)


async def test_a_connection_lost_mid_batch_leaves_the_rest_for_later(
    tmp_path: Path, database_url: str, models_dir: Path, plain_smtp_server: ServerFactory
) -> None:
    class DropsAfterTwo(Recorder):
        dropped = False

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if len(self.received) == 2 and not self.dropped:
                self.dropped = True
                server.transport.close()  # the connection dies before the third mail is accepted
                return "451 gone"
            return await super().handle_DATA(server, session, envelope)

    recorder = DropsAfterTwo()
    async with plain_smtp_server(recorder) as port, _services(tmp_path, database_url, models_dir, port) as services:
        ids = await _outbox(services, [f"expert{n}@example.org" for n in range(5)])
        with pytest.raises(SmtpUnavailable):
            await send_emails(services, ids)
        emails = await _emails(services, ids)
        assert [e.status for e in emails] == ["sent", "sent", "queued", "queued", "queued"]
        assert [e.attempts for e in emails] == [1, 1, 1, 1, 1] and all(e.last_error for e in emails[2:])
        assert recorder.connections == 1

        await send_emails(services, ids)  # the retry, on a new connection: only the three left
        emails = await _emails(services, ids)
    assert all(e.status == "sent" for e in emails) and recorder.connections == 2
    assert sorted(recorder.message_ids) == sorted(e.message_id for e in emails)  # each once


# -- notify_experts --------------------------------------------------------------------------------

async def _routed(services: Services, count: int) -> tuple[list[int], list[int]]:
    """``count`` routed items, each under a post (the last one an ad) with a classification
    and an assignment to one expert; returns (assignment ids, item ids)."""
    now = utcnow()
    async with services.sessions.begin() as session:
        channel = Channel(platform="facebook", external_id="42", name="Boulangerie Dorée", credentials={"page_token": "t"})
        expert = Expert(name="Chloé", email="chloe@example.org", language="fr", timezone="America/Montreal")
        post = Item(platform="facebook", external_id="42_1", kind="post", text="Nouvelle galette des rois !",
                    created_time=now, status="brand", is_ad=True, channel=channel)
        session.add_all([channel, expert, post])
        items = [
            Item(platform="facebook", external_id=f"42_1_{n}", kind="comment", parent_external_id="42_1",
                 thread_external_id="42_1", author_name=f"Client {n}", text=f"Le pain n°{n} était froid",
                 created_time=now - timedelta(seconds=5), status="routed", language="fr", channel=channel)
            for n in range(count)
        ]
        session.add_all(items)
        await session.flush()
        session.add_all(Classification(item_id=item.id, label="other", confidence=0.5, model_version="m") for item in items)
        await session.flush()
        session.add_all(Classification(item_id=item.id, label="complaint", confidence=0.9, model_version="m") for item in items)
        assignments = [
            Assignment(item_id=item.id, expert_id=expert.id, rule_name="Plaintes", rules_version="v1",
                       reply_mode="private", sla_due=now + timedelta(hours=1))
            for item in items
        ]
        session.add_all(assignments)
        await session.flush()
        return [a.id for a in assignments], [item.id for item in items]


async def _count(services: Services, query: Any) -> int:
    async with services.sessions() as session:
        return int(await session.scalar(query) or 0)


@contextlib.contextmanager
def _statements(services: Services) -> Any:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(services.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(services.engine.sync_engine, "before_cursor_execute", record)


async def test_notify_experts_writes_one_mail_each_once(tmp_path: Path, database_url: str, models_dir: Path) -> None:
    async with _services(tmp_path, database_url, models_dir, free_port()) as services:
        assignment_ids, item_ids = await _routed(services, 6)
        async with services.sessions.begin() as session:  # one answered meanwhile, one assigned to nobody
            answered = await session.get(Item, item_ids[0])
            assert answered is not None
            answered.status = "answered"
            triage = Assignment(item_id=item_ids[1], expert_id=None, rule_name="défaut", rules_version="v1",
                                reply_mode="private", sla_due=utcnow() + timedelta(hours=1))
            session.add(triage)
            reply = Item(platform="facebook", external_id="42_1_2_r", kind="comment", parent_external_id="42_1_2",
                         text="Moi aussi !", created_time=utcnow(), status="routed", channel_id=answered.channel_id)
            session.add(reply)
            await session.flush()
            to_reply = Assignment(item_id=reply.id, expert_id=await session.scalar(select(Expert.id)), rule_name="Plaintes",
                                  rules_version="v1", reply_mode="private", sla_due=utcnow() + timedelta(hours=1))
            session.add(to_reply)
            await session.flush()
            batch = [*assignment_ids, triage.id, to_reply.id]
        announced: list[tuple[str, dict[str, object]]] = []
        services.listeners.append(lambda name, data: announced.append((name, data)))

        with _statements(services) as statements:
            await notify_experts(services, batch)
        first_run = len(statements)
        await notify_experts(services, batch)  # a retried batch writes nothing more

        async with services.sessions() as session:
            emails = (await session.scalars(select(Email).order_by(Email.item_id))).all()
            items = {i.id: i.status for i in await session.scalars(select(Item).where(Item.id.in_(item_ids)))}
            jobs = (await session.execute(select(Job.kind, func.count()).group_by(Job.kind))).all()
        links = await _count(services, select(func.count()).select_from(ReplyLink))
    *mails, reply_mail = emails
    assert [e.item_id for e in mails] == item_ids[1:]  # one each, none for the answered item
    assert items == {item_ids[0]: "answered", **{i: "notified" for i in item_ids[1:]}}
    assert dict(jobs) == {"send_email": 6, "sla_check": 18} and links == 6
    assert sorted(d["item_id"] for name, d in announced if name == "item.notified") == [*item_ids[1:], reply_mail.item_id]
    mail = mails[0]
    assert mail.to_address == "chloe@example.org" and "/reply/" in mail.body_text
    assert "Boulangerie Dorée" in mail.subject and "galette des rois" in mail.body_text  # page, parent post
    assert "Le pain n°1 était froid" in mail.body_text and "Publicité / promotion" in (mail.body_html or "")
    # a reply to a comment: the comment is its parent, the ad post under it still shows
    assert "Le pain n°2 était froid" in reply_mail.body_text and "galette" not in reply_mail.body_text
    assert "Publicité / promotion" in (reply_mail.body_html or "")
    assert first_run <= 20, statements  # a handful per batch, not several per mail


async def test_notify_statements_do_not_grow_with_the_batch(tmp_path: Path, database_url: str, models_dir: Path) -> None:
    async with _services(tmp_path, database_url, models_dir, free_port()) as services:
        assignment_ids, _ = await _routed(services, 30)
        with _statements(services) as small:
            await notify_experts(services, assignment_ids[:2])
        with _statements(services) as large:
            await notify_experts(services, assignment_ids[2:])
        assert await _count(services, select(func.count()).select_from(Email)) == 30
    assert len(large) == len(small), (small, large)
