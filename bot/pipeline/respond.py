"""Respond stage: post an expert's reply through the channel, at most once, and measure it.

The reply is a ``responses`` row written before anything is sent (the intent).
Its status moves pending -> sending -> (private_sent ->) sent. A job that finds
a reply still ``sending`` cannot know whether the platform got it (the worker
died mid-call), so it parks the reply as ``in_doubt`` for a person to check
instead of risking a second answer.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from bot.channels.base import ReplyTarget
from bot.domain import ItemKind
from bot.errors import ChannelError, ReplyRejected, TokenInvalid
from bot.kpi import events
from bot.pipeline.worker import PermanentFailure
from bot.services import Services
from bot.store.models import Channel, Email, Item, ReplyLink, Response, utcnow

log = logging.getLogger(__name__)


async def _set(services: Services, response_id: int, **values: object) -> None:
    async with services.sessions.begin() as session:
        row = await session.get(Response, response_id)
        assert row is not None
        for key, value in values.items():
            setattr(row, key, value)


async def respond(services: Services, response_id: int) -> None:
    async with services.sessions.begin() as session:
        response = await session.get(Response, response_id, with_for_update=True)
        if response is None or response.status in ("sent", "failed", "in_doubt"):
            return
        if response.status == "sending":
            response.status = "in_doubt"
            response.error = "the worker stopped while sending: check the platform before answering again"
            in_doubt = True
        else:
            in_doubt = False
            item = await session.get(Item, response.item_id)
            channel_row = await session.get(Channel, item.channel_id) if item and item.channel_id else None
            if item is None or channel_row is None:
                response.status, response.error = "failed", "the item has no channel to answer on"
                return
            if channel_row.status == "token_invalid":
                raise TokenInvalid(f"channel {channel_row.name!r} needs a new token")
            resume_ack = response.status == "private_sent"
            if not resume_ack:
                response.status = "sending"
            target = ReplyTarget(
                external_id=item.external_id,
                kind=ItemKind(item.kind),
                author_id=item.author_id,
                parent_external_id=item.parent_external_id,
                thread_external_id=item.thread_external_id,
            )
            mode, text, ack_text = response.mode, response.text, response.ack_text
    if in_doubt:
        raise PermanentFailure(f"reply {response_id} is in doubt: it may or may not be on the platform")

    channel = await services.channels.get(channel_row)
    try:
        if mode == "public":
            sent = await channel.reply_public(target, text)
            await _set(services, response_id, platform_id=sent.platform_id)
        else:
            if not resume_ack:
                sent = await channel.reply_private(target, text)
                await _set(services, response_id, platform_id=sent.platform_id, status="private_sent")
            if ack_text:
                ack = await channel.reply_public(target, ack_text)
                await _set(services, response_id, ack_platform_id=ack.platform_id)
    except ReplyRejected as exc:
        await _set(services, response_id, status="failed", error=str(exc))
        await _release_link(services, response_id)
        services.announce("response.failed", {"response_id": response_id, "error": str(exc)})
        return
    except ChannelError as exc:
        async with services.sessions.begin() as session:
            row = await session.get(Response, response_id)
            assert row is not None
            if row.status == "sending":
                row.status = "pending"  # the platform said no: nothing was posted
            row.error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, TokenInvalid):
                ch = await session.get(Channel, channel_row.id)
                assert ch is not None
                ch.status, ch.status_detail = "token_invalid", str(exc)
        raise
    await _finish(services, response_id)


async def _release_link(services: Services, response_id: int) -> None:
    """A refused reply was not sent: its reply link may be used again to correct it."""
    async with services.sessions.begin() as session:
        response = await session.get(Response, response_id)
        assert response is not None
        if response.idempotency_key.startswith("link:"):
            link = await session.get(ReplyLink, response.idempotency_key.split(":")[1])
            if link is not None:
                link.used_at = None


async def _finish(services: Services, response_id: int) -> None:
    async with services.sessions.begin() as session:
        response = await session.get(Response, response_id)
        assert response is not None
        item = await session.get(Item, response.item_id)
        assert item is not None
        now = utcnow()
        response.status, response.sent_at, response.error = "sent", now, None
        item.status = "answered"
        since = events.elapsed(item.created_time, now)
        detail = {"mode": response.mode}
        await events.record(session, events.FIRST_RESPONSE, item, since, now, expert_id=response.expert_id, detail=detail)
        if response.mode == "public" or response.ack_text:
            await events.record(session, events.PUBLIC_ACK, item, since, now, expert_id=response.expert_id)
        notified_at = await session.scalar(
            select(Email.created_at).where(Email.item_id == item.id, Email.kind == "notification").order_by(Email.id).limit(1)
        )
        if notified_at is not None:
            await events.record(
                session, events.EXPERT_RESPONSE, item, events.elapsed(notified_at, now), now, expert_id=response.expert_id
            )
    services.announce("item.answered", {"item_id": response.item_id, "response_id": response_id})
