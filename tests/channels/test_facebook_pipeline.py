"""Facebook features across the whole stack (the e2e stack: Relais server and worker, the fake
Graph API driven by the real facebook-sdk, a real SMTP catcher), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bot.demo.experts import reply_link
from bot.ingest.store_items import recovered_by_polling
from bot.store.models import Channel, Item
from tests.e2e.test_pipeline_end_to_end import (  # noqa: F401 (stack: fixture)
    PAGE_ID,
    Stack,
    _answer_by_link,
    _status,
    eventually,
    stack,
)


async def _item(stack: Stack, external_id: str) -> Item | None:
    async with stack.services.sessions() as session:
        return await session.scalar(select(Item).where(Item.external_id == external_id))


async def test_a_comment_whose_webhook_was_lost_is_recovered_by_polling(stack: Stack) -> None:  # noqa: F811
    now = datetime.now(UTC)
    older = stack.graph.publish_post(PAGE_ID, "Notre galette des rois est de retour 👑",
                                     created_time=now - timedelta(hours=3))
    newer = stack.graph.publish_post(PAGE_ID, "Horaires des fêtes", created_time=now - timedelta(minutes=5))
    await eventually(lambda: _item(stack, newer))  # the poll cursor is now past the older post
    # a comment under the older post, whose webhook Meta never delivers
    comment = stack.graph.user_comment(older, {"id": "5101", "name": "Lucie Martin"},
                                       "La galette achetée ce matin était crue au milieu, c'est inadmissible")
    assert stack.graph.pending_webhooks
    stack.graph.pending_webhooks.clear()

    stored = await eventually(lambda: _item(stack, comment))
    assert stored.source == "poll" and stored.parent_external_id == older
    async with stack.services.sessions() as session:
        channel_id = await session.scalar(select(Channel.id).where(Channel.external_id == PAGE_ID))
        assert (await recovered_by_polling(session))[channel_id] == 1  # brand posts do not count

    # and it goes through the pipeline like any other comment: classified, routed, emailed, answered
    mail = await stack.catcher.wait_for(lambda m: "Lucie Martin" in m.get_body(("plain",)).get_content(), timeout=30)
    link = reply_link(mail)
    assert link
    await _answer_by_link(stack, link, mode="public")
    replies = await eventually(lambda: stack.graph.replies_to(comment))
    assert replies[0]["from"]["id"] == PAGE_ID
    await eventually(lambda: _status(stack.services, comment, "answered"))

    # a comment that did arrive by webhook is not counted (polls fail meanwhile: no race)
    stack.graph.set_outage(503)
    other = stack.graph.user_comment(older, {"id": "5102", "name": "Paul"}, "Elle était parfaite chez moi !")
    assert await stack.graph.deliver_pending() == [200]
    assert (await eventually(lambda: _item(stack, other))).source == "webhook"
    stack.graph.clear_failures()
    async with stack.services.sessions() as session:
        assert (await recovered_by_polling(session))[channel_id] == 1
