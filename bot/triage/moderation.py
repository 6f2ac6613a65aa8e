"""The ``hide_item`` stage: hide (or show again) a comment on its platform.

Queued by :func:`bot.triage.actions.hide`. The platform call goes through the
channel adapter; ``items.is_hidden`` changes only once the platform has done it.
Hiding twice is harmless on the platform, so a retried job simply calls again.
A dead token stops the channel like any other stage (the job waits for the new token).
"""

from __future__ import annotations

from bot.channels.base import ReplyTarget
from bot.domain import ItemKind
from bot.errors import TokenInvalid
from bot.notify.alerts import mark_token_invalid
from bot.pipeline.worker import PermanentFailure
from bot.services import Services
from bot.store.models import AuditEntry, Channel, Item, utcnow


async def hide_item(services: Services, item_id: int, hidden: bool = True) -> None:
    async with services.sessions() as session:
        item = await session.get(Item, item_id)
        channel_row = await session.get(Channel, item.channel_id) if item and item.channel_id else None
    if item is None or channel_row is None:
        raise PermanentFailure(f"item {item_id} has no channel to hide it on")
    if item.is_hidden == hidden or item.status == "removed":
        return
    if channel_row.status == "token_invalid":
        raise TokenInvalid(f"channel {channel_row.name!r} needs a new token")
    adapter = await services.channels.get(channel_row)
    hide = getattr(adapter, "hide", None)
    if hide is None:
        raise PermanentFailure(f"{item.platform} channels cannot hide a comment")
    target = ReplyTarget(
        external_id=item.external_id,
        kind=ItemKind(item.kind),
        author_id=item.author_id,
        parent_external_id=item.parent_external_id,
        thread_external_id=item.thread_external_id,
    )
    try:
        await hide(target, hidden)
    except TokenInvalid as exc:
        async with services.sessions.begin() as session:
            row = await session.get(Channel, channel_row.id)
            assert row is not None
            await mark_token_invalid(services, session, row, str(exc))
        services.announce("channel.token_invalid", {"channel_id": channel_row.id})
        raise
    async with services.sessions.begin() as session:
        row = await session.get(Item, item_id)
        assert row is not None
        row.is_hidden = hidden
        session.add(AuditEntry(item_id=item_id, actor="relais", action="hidden" if hidden else "shown", detail={}, at=utcnow()))
    services.announce("item.updated", {"item_id": item_id, "action": "hidden" if hidden else "shown"})
