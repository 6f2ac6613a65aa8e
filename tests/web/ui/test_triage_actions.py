"""bot.triage.queue and bot.triage.actions on SQLite and PostgreSQL: attention order,
filters, search, counts; assign, reclassify, resolve/reopen, hide (through the job and the
fake Graph API's adapter), spam, notes, replies; each with its audit entry."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from aiohttp.test_utils import TestServer

from bot.channels.simulated.graph_api import FakeGraphAPI
from bot.pipeline.flow import handlers
from bot.pipeline.worker import Worker
from bot.services import Services
from bot.store.models import (
    Assignment,
    AuditEntry,
    Channel,
    Classification,
    Expert,
    Item,
    ItemNote,
    Job,
    Response,
    User,
)
from bot.triage import actions, detail
from bot.triage.queue import UNASSIGNED, QueueFilters, count_queue, list_queue

NOW = datetime(2030, 5, 17, 12, 0, tzinfo=UTC)
CM = "camille.cm@boulangerie-doree.example"
_ids = itertools.count(1)


async def _channel(services: Services, platform: str = "facebook", status: str = "active") -> int:
    async with services.sessions.begin() as session:
        channel = Channel(platform=platform, external_id=f"page{next(_ids)}", name="Boulangerie Dorée", status=status)
        session.add(channel)
        await session.flush()
        return channel.id


async def _item(
    services: Services,
    channel_id: int,
    *,
    text: str = "Le pain était rassis",
    status: str = "triage",
    label: str | None = "complaint",
    confidence: float = 0.9,
    expert: str | None = None,
    sla_due: datetime | None = None,
    created: datetime = NOW - timedelta(hours=1),
    language: str = "fr",
    platform: str = "facebook",
) -> int:
    n = next(_ids)
    async with services.sessions.begin() as session:
        item = Item(channel_id=channel_id, platform=platform, external_id=f"777_{n}", kind="comment",
                    parent_external_id="777", author_id=f"a{n}", author_name=f"Client {n}", text=text,
                    language=language, created_time=created, status=status)
        session.add(item)
        await session.flush()
        if label:
            session.add(Classification(item_id=item.id, label=label, confidence=confidence, model_version="t"))
        if sla_due or expert:
            expert_id = await session.scalar(select(Expert.id).where(Expert.email == expert)) if expert else None
            session.add(Assignment(item_id=item.id, expert_id=expert_id, rule_name="r", rules_version="v",
                                   reply_mode="public", sla_due=sla_due or NOW + timedelta(hours=5)))
        return item.id


async def _expert_id(services: Services, email: str) -> int:
    async with services.sessions() as session:
        found = await session.scalar(select(Expert.id).where(Expert.email == email))
        assert found is not None
        return int(found)


async def test_queue_puts_what_needs_attention_first_and_filters(services: Services) -> None:
    ch = await _channel(services)
    broken = await _channel(services, status="token_invalid")
    calm = await _item(services, ch, status="notified", expert="chloe.qualite@boulangerie-doree.example",
                       sla_due=NOW + timedelta(hours=6))
    unassigned = await _item(services, ch, status="triage", sla_due=NOW + timedelta(hours=20))
    review = await _item(services, ch, status="notified", confidence=0.2,
                         expert="chloe.qualite@boulangerie-doree.example", sla_due=NOW + timedelta(hours=7))
    at_risk = await _item(services, ch, status="notified", expert="chloe.qualite@boulangerie-doree.example",
                          sla_due=NOW + timedelta(minutes=20))
    token = await _item(services, broken, status="notified", expert="chloe.qualite@boulangerie-doree.example",
                        sla_due=NOW + timedelta(hours=8))
    breached = await _item(services, ch, status="notified", expert="chloe.qualite@boulangerie-doree.example",
                           sla_due=NOW - timedelta(minutes=5), text="Toujours pas de réponse, 100% déçu_e")
    done = await _item(services, ch, status="answered", expert="chloe.qualite@boulangerie-doree.example",
                       sla_due=NOW - timedelta(hours=1))
    english = await _item(services, ch, status="triage", language="en", label="product_feedback",
                          text="Loved the croissant", created=NOW - timedelta(days=3))

    async with services.sessions() as session:
        rows = await list_queue(session, now=NOW)
        order = [r.id for r in rows]
        assert order[:5] == [breached, token, at_risk, review, unassigned]
        assert set(order) == {breached, token, at_risk, review, unassigned, english, calm}
        assert order[-1] == calm and done not in order
        by_id = {r.id: r for r in rows}
        assert by_id[breached].reasons == ("breached",)
        assert by_id[token].reasons == ("error",)
        assert by_id[review].reasons == ("needs_review",)
        assert by_id[unassigned].reasons == ("unassigned",)
        assert by_id[calm].reasons == () and by_id[calm].expert_name == "Chloé Tremblay"

        counts = await count_queue(session, now=NOW)
        assert counts == {"total": 7, "breached": 1, "error": 1, "at_risk": 1, "needs_review": 1, "unassigned": 2}

        by_sla = [r.id for r in await list_queue(session, QueueFilters(sort="sla"), now=NOW)]
        assert by_sla[:3] == [breached, at_risk, calm] and by_sla[-1] == english  # no deadline: last

        assert [r.id for r in await list_queue(session, QueueFilters(language="en"), now=NOW)] == [english]
        assert [r.id for r in await list_queue(session, QueueFilters(category="product_feedback"), now=NOW)] == [english]
        assert {r.id for r in await list_queue(session, QueueFilters(assignee=UNASSIGNED), now=NOW)} == {unassigned, english}
        assert [r.id for r in await list_queue(session, QueueFilters(channel_id=broken), now=NOW)] == [token]
        assert [r.id for r in await list_queue(session, QueueFilters(status="answered"), now=NOW)] == [done]
        assert [r.id for r in await list_queue(session, QueueFilters(reason="at_risk"), now=NOW)] == [at_risk]
        recent = await list_queue(session, QueueFilters(since=NOW - timedelta(days=1)), now=NOW)
        assert english not in [r.id for r in recent]
        # search is case-blind, and % and _ are literal characters
        assert [r.id for r in await list_queue(session, QueueFilters(search="TOUJOURS"), now=NOW)] == [breached]
        assert [r.id for r in await list_queue(session, QueueFilters(search="100% déçu_e"), now=NOW)] == [breached]
        assert await list_queue(session, QueueFilters(search="100%%"), now=NOW) == []
        assert [r.id for r in await list_queue(session, QueueFilters(search="client"), now=NOW, limit=2)] == order[:2]


async def test_assign_reclassify_resolve_reopen_spam_note_are_audited(services: Services) -> None:
    ch = await _channel(services)
    item_id = await _item(services, ch, status="needs_review", confidence=0.3)
    chloe = await _expert_id(services, "chloe.qualite@boulangerie-doree.example")
    sarah = await _expert_id(services, "sarah.marketing@boulangerie-doree.example")
    async with services.sessions.begin() as session:
        user = User(email=CM, name="Camille", role="community_manager", password_hash="x")
        session.add(user)
        await session.flush()
        user_id = user.id

    async with services.sessions.begin() as session:
        await actions.reclassify(session, item_id, "product_feedback", actor=CM)
        first = await actions.assign(session, item_id, chloe, actor=CM, rules=services.rules)
    async with services.sessions.begin() as session:
        second = await actions.assign(session, item_id, sarah, actor=CM, rules=services.rules)
        await actions.add_note(session, item_id, "Client fidèle, déjà venu <b>deux</b> fois", actor=CM, user_id=user_id)
    async with services.sessions() as session:
        item = await session.get(Item, item_id)
        assert item is not None and item.status == "routed"
        label = await session.scalar(select(Classification).where(Classification.item_id == item_id)
                                     .order_by(Classification.id.desc()).limit(1))
        assert label is not None and (label.label, label.source, label.created_by) == ("product_feedback", "human", CM)
        latest = await session.get(Assignment, second.id)
        assert latest is not None and latest.expert_id == sarah and latest.assigned_by == CM
        assert first.sla_due == second.sla_due == item.created_time + timedelta(seconds=services.rules.default_sla_seconds)
        notify = (await session.scalars(select(Job.payload).where(Job.kind == "notify"))).all()
        assert {p["assignment_id"] for p in notify} == {first.id, second.id}
        assert await session.scalar(select(ItemNote.text)) == "Client fidèle, déjà venu <b>deux</b> fois"

    async with services.sessions.begin() as session:
        await actions.resolve(session, item_id, actor=CM)
    async with services.sessions.begin() as session:
        with pytest.raises(actions.ActionRefused) as refused:
            await actions.resolve(session, item_id, actor=CM)
        assert refused.value.reason == "already"
    async with services.sessions() as session:
        item = await session.get(Item, item_id)
        assert item is not None and item.status == "resolved" and item.resolved_at is not None
        assert await list_queue(session) == []  # resolved: out of the open queue
    async with services.sessions.begin() as session:
        await actions.reopen(session, item_id, actor=CM)
        await actions.mark_spam(session, item_id, actor=CM)
    async with services.sessions() as session:
        item = await session.get(Item, item_id)
        assert item is not None and item.status == "routed" and item.resolved_at is None and item.is_spam
        assert [r.id for r in await list_queue(session, QueueFilters(status="spam"))] == [item_id]
        assert await list_queue(session) == []
        audit = (await session.execute(select(AuditEntry.action, AuditEntry.actor)
                                       .where(AuditEntry.item_id == item_id).order_by(AuditEntry.id))).all()
        assert [a for a, _ in audit] == ["reclassify", "assign", "reassign", "note", "resolve", "reopen", "spam"]
        assert {actor for _, actor in audit} == {CM}
        history = await detail.item_history(session, item_id)
        kinds = [(h.kind, h.action) for h in history]
        assert ("label", "model_label") in kinds and ("label", "human_label") in kinds
        assert ("note", "note") in kinds and ("audit", "resolve") in kinds
        assert [h.at for h in history] == sorted(h.at for h in history)

    with pytest.raises(actions.ActionRefused):
        async with services.sessions.begin() as session:
            await actions.reclassify(session, item_id, "urgent!!", actor=CM)
    other = await _item(services, ch)
    result = await actions.bulk(services.sessions, [other, item_id, 999999], actions.resolve, actor=CM)
    assert result.done == [other, item_id] and result.refused == {999999: "no_item"}
    answered = await _item(services, ch, status="answered")
    result = await actions.bulk(services.sessions, [answered, other], actions.assign, chloe, actor=CM)
    assert result.done == [other] and result.refused == {answered: "closed"}
    async with services.sessions() as session:
        reopened = await session.get(Item, other)
        assert reopened is not None and reopened.status == "routed" and reopened.resolved_at is None


async def test_reply_from_the_ui_is_sent_once_and_hide_goes_through_the_job(services: Services) -> None:
    ch = await _channel(services, platform="x")
    item_id = await _item(services, ch, platform="x")
    async with services.sessions.begin() as session:
        first = await actions.reply(session, item_id, actor=CM, mode="public", text="Désolés !", form_key="k1")
    async with services.sessions.begin() as session:  # the same form, submitted twice
        again = await actions.reply(session, item_id, actor=CM, mode="public", text="Désolés !", form_key="k1")
    assert again.id == first.id
    async with services.sessions.begin() as session:
        with pytest.raises(actions.ActionRefused) as refused:  # a second reply to the same item
            await actions.reply(session, item_id, actor=CM, mode="public", text="Encore", form_key="k2")
        assert refused.value.reason == "answered"
        with pytest.raises(actions.ActionRefused) as cannot:  # X comments cannot be hidden
            await actions.hide(session, item_id, actor=CM)
        assert cannot.value.reason == "cannot_hide"
    async with services.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Response)) == 1
        jobs = (await session.scalars(select(Job).where(Job.kind == "respond"))).all()
        assert [j.payload for j in jobs] == [{"response_id": first.id}]


async def test_an_automatic_acknowledgement_does_not_block_the_real_reply(services: Services) -> None:
    ch = await _channel(services)
    item_id = await _item(services, ch)
    async with services.sessions.begin() as session:  # what the rule action auto_ack records
        session.add(Response(item_id=item_id, mode="ack", text="Merci, on regarde !",
                             idempotency_key=f"auto_ack:{item_id}", status="sent"))
    async with services.sessions.begin() as session:
        reply = await actions.reply(session, item_id, actor=CM, mode="public", text="Désolés !", form_key="k1")
    assert reply.mode == "public" and reply.status == "pending"


async def test_hide_job_hides_the_comment_on_the_fake_graph_api(services: Services) -> None:
    graph = FakeGraphAPI()
    graph.add_page("777", "Boulangerie Dorée", "page-token")
    post = graph.publish_post("777", "Notre galette est de retour")
    comment = graph.user_comment(post, {"id": "51", "name": "Spammeur"}, "Gagnez un iPhone ici !!!")
    server = TestServer(graph.app)
    await server.start_server()
    try:
        async with services.sessions.begin() as session:
            channel = Channel(platform="facebook", external_id="777", name="Boulangerie Dorée",
                              credentials={"page_token": "page-token"}, api_url=str(server.make_url("")).rstrip("/"))
            session.add(channel)
            await session.flush()
            item = Item(channel_id=channel.id, platform="facebook", external_id=comment, kind="comment",
                        parent_external_id=post, author_id="51", text="Gagnez un iPhone ici !!!",
                        created_time=NOW, status="triage")
            session.add(item)
            await session.flush()
            item_id = item.id
        async with services.sessions.begin() as session:
            await actions.hide(session, item_id, actor=CM)
        assert not graph.comments[comment].get("is_hidden")  # nothing happens before the job runs
        worker = Worker(services.sessions, handlers(services), concurrency=1)
        await worker.run_once()
        assert graph.comments[comment]["is_hidden"] is True
        async with services.sessions() as session:
            row = await session.get(Item, item_id)
            assert row is not None and row.is_hidden
            actions_done = (await session.scalars(select(AuditEntry.action).where(AuditEntry.item_id == item_id)
                                                  .order_by(AuditEntry.id))).all()
            assert actions_done == ["hide", "hidden"]
    finally:
        await server.close()


async def test_worker_runs_hide_item(services: Services) -> None:
    """A hide on an item whose channel no longer exists becomes a dead job with a clear error."""
    ch = await _channel(services)
    item_id = await _item(services, ch)
    async with services.sessions.begin() as session:
        await actions.hide(session, item_id, actor=CM)
        (await session.get(Item, item_id)).channel_id = None  # type: ignore[union-attr]
    worker = Worker(services.sessions, handlers(services), concurrency=1)
    await worker.run_once()
    async with services.sessions() as session:
        job = await session.scalar(select(Job).where(Job.kind == "hide_item"))
        assert job is not None and job.status == "dead" and "no channel" in (job.last_error or "")
        item = await session.get(Item, item_id)
        assert item is not None and not item.is_hidden
