"""Respond stage: post an expert's reply through the channel, at most once, and measure it.

The reply is a ``responses`` row written before anything is sent (the intent).
Each platform call is preceded by a committed status, so a job that runs again
after a crash knows what may already be on the platform:

    pending ─► sending ─► sent                                  (public, or private without ack)
    pending ─► sending ─► private_sent ─► ack_sending ─► sent   (private with a public ack)

A job that finds ``sending`` cannot know whether the platform got the reply (the
worker died mid-call), so it parks it as ``in_doubt`` for a person to check
instead of risking a second answer. ``ack_sending`` found again means the
private reply is out and the acknowledgement may be: the reply counts as sent
and the acknowledgement is not repeated. A refused reply is ``failed`` and its
link opens again so the expert can correct it; a refused acknowledgement
leaves the (already sent) private reply ``sent``, with a note.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from bot.channels.base import Channel as ChannelAdapter
from bot.channels.base import ReplyTarget
from bot.domain import ItemKind, SentReply
from bot.errors import ChannelError, ReplyRejected, TokenInvalid
from bot.kpi import events
from bot.notify.alerts import mark_token_invalid
from bot.pipeline.worker import PermanentFailure
from bot.services import Services
from bot.store.models import Channel, Email, Item, ReplyLink, Response, utcnow

log = logging.getLogger(__name__)

FINAL = ("sent", "failed", "in_doubt")


async def _set(services: Services, response_id: int, **values: object) -> None:
    async with services.sessions.begin() as session:
        row = await session.get(Response, response_id)
        assert row is not None
        for key, value in values.items():
            setattr(row, key, value)


async def _prepare(services: Services, response_id: int) -> tuple[str, Channel, ReplyTarget, Response] | None:
    """Claim the next step of a reply: returns its status before the step, or None when done."""
    async with services.sessions.begin() as session:
        response = await session.get(Response, response_id, with_for_update=True)
        if response is None or response.status in FINAL:
            return None
        item = await session.get(Item, response.item_id)
        channel = await session.get(Channel, item.channel_id) if item and item.channel_id else None
        if item is None or channel is None:
            response.status, response.error = "failed", "the item has no channel to answer on"
            return None
        if channel.status == "token_invalid":
            raise TokenInvalid(f"channel {channel.name!r} needs a new token")
        step = response.status
        response.status = {"pending": "sending", "private_sent": "ack_sending"}.get(step, step)
        target = ReplyTarget(
            external_id=item.external_id,
            kind=ItemKind(item.kind),
            author_id=item.author_id,
            parent_external_id=item.parent_external_id,
            thread_external_id=item.thread_external_id,
        )
        return step, channel, target, response


async def respond(services: Services, response_id: int) -> None:
    prepared = await _prepare(services, response_id)
    if prepared is None:
        return
    step, channel_row, target, response = prepared
    if step == "ack_sending":
        await _finish(services, response_id, note="the public acknowledgement may not have been posted (interrupted)")
        return
    channel = await services.channels.get(channel_row)
    if step == "sending":  # an earlier run stopped during the platform call
        found = await _look_up(services, channel, target, response)
        if found is not None:
            await _finish(services, response_id, platform_id=found.platform_id, note="found on the platform after an interrupted send")
            return
        step = "pending"  # the platform has no such reply: send it now
    if step == "pending":
        sent = await _send_reply(services, channel, channel_row, target, response)
        if sent is None:
            return
        if response.mode in ("public", "ack") or not response.ack_text:
            await _finish(services, response_id, platform_id=sent.platform_id)
            return
        await _set(services, response_id, platform_id=sent.platform_id, status="private_sent")
        await _set(services, response_id, status="ack_sending")
    await _send_ack(services, channel, channel_row, target, response)


async def _look_up(services: Services, channel: ChannelAdapter, target: ReplyTarget, response: Response) -> SentReply | None:
    """Ask the platform whether an interrupted reply was posted: the reply when it was,
    None when it was not (sending again is safe). When the platform cannot be asked
    (a private reply, a channel without ``find_public_reply``), the reply is parked as
    ``in_doubt`` for a person, rather than risk a second answer. A platform error
    (outage, rate limit) is raised: the job retries and asks again later."""
    find = getattr(channel, "find_public_reply", None)
    public = response.mode in ("public", "ack")
    if find is not None and public:
        try:
            # the brand's own reply to this item, posted since the reply was written
            return await find(target, response.text, since=response.created_at - timedelta(minutes=2))  # type: ignore[no-any-return]
        except NotImplementedError:
            pass
    await _set(services, response.id, status="in_doubt",
               error="the worker stopped while sending and the platform cannot be asked: check it before answering again")
    raise PermanentFailure(f"reply {response.id} is in doubt: it may or may not be on the platform")


async def _send_reply(
    services: Services, channel: ChannelAdapter, row: Channel, target: ReplyTarget, response: Response
) -> SentReply | None:
    """The reply itself. None when the platform refused it (the expert may correct it)."""
    try:
        if response.mode in ("public", "ack"):  # ack: a rule's automatic public acknowledgement
            sent = await channel.reply_public(target, response.text)
        else:
            sent = await channel.reply_private(target, response.text)
    except ReplyRejected as exc:
        await _set(services, response.id, status="failed", error=str(exc), error_code=exc.reason)
        await _release_link(services, response.id)
        services.announce("response.failed", {"response_id": response.id, "error": str(exc)})
        return None
    except ChannelError as exc:
        await _platform_said_no(services, response.id, row.id, "pending", exc)
        raise
    return sent


async def _send_ack(services: Services, channel: ChannelAdapter, row: Channel, target: ReplyTarget, response: Response) -> None:
    try:
        ack = await channel.reply_public(target, response.ack_text or "")
    except ReplyRejected as exc:
        await _finish(services, response.id, note=f"the public acknowledgement was refused: {exc}")
        return
    except ChannelError as exc:
        await _platform_said_no(services, response.id, row.id, "private_sent", exc)
        raise
    await _set(services, response.id, ack_platform_id=ack.platform_id)
    await _finish(services, response.id)


async def _platform_said_no(services: Services, response_id: int, channel_id: int, back_to: str, exc: ChannelError) -> None:
    """Nothing was posted: step back so the retry sends again; a dead token stops the channel."""
    async with services.sessions.begin() as session:
        row = await session.get(Response, response_id)
        assert row is not None
        row.status, row.error = back_to, f"{type(exc).__name__}: {exc}"
        if isinstance(exc, TokenInvalid):
            channel = await session.get(Channel, channel_id)
            assert channel is not None
            await mark_token_invalid(services, session, channel, str(exc))
    if isinstance(exc, TokenInvalid):
        services.wake()
        services.announce("channel.token_invalid", {"channel_id": channel_id})


async def _release_link(services: Services, response_id: int) -> None:
    """A refused reply was not sent: its reply link may be used again to correct it."""
    async with services.sessions.begin() as session:
        response = await session.get(Response, response_id)
        assert response is not None
        if response.idempotency_key.startswith("link:"):
            link = await session.get(ReplyLink, response.idempotency_key.split(":")[1])
            if link is not None:
                link.used_at = None


async def _finish(services: Services, response_id: int, *, note: str | None = None, platform_id: str | None = None) -> None:
    async with services.sessions.begin() as session:
        response = await session.get(Response, response_id)
        assert response is not None
        item = await session.get(Item, response.item_id)
        assert item is not None
        now = utcnow()
        response.status, response.sent_at, response.error = "sent", now, note
        if platform_id:
            response.platform_id = platform_id
        since = events.elapsed(item.created_time, now)
        if response.mode == "ack":
            # a rule's automatic acknowledgement (bot.pipeline.rule_effects): a public
            # acknowledgement, not the answer; the item stays with its expert
            await events.record(session, events.PUBLIC_ACK, item, since, now, detail={"auto": True})
            return
        item.status = "answered"
        detail = {"mode": response.mode}
        await events.record(session, events.FIRST_RESPONSE, item, since, now, expert_id=response.expert_id, detail=detail)
        if response.mode == "public" or response.ack_platform_id:
            await events.record(session, events.PUBLIC_ACK, item, since, now, expert_id=response.expert_id)
        notified_at = await session.scalar(
            select(Email.created_at).where(Email.item_id == item.id, Email.kind == "notification").order_by(Email.id).limit(1)
        )
        if notified_at is not None:
            await events.record(
                session, events.EXPERT_RESPONSE, item, events.elapsed(notified_at, now), now, expert_id=response.expert_id
            )
    services.announce("item.answered", {"item_id": response.item_id, "response_id": response_id})
