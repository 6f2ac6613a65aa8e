"""What a matched rule does beyond the assignment: hide, auto-acknowledge, notify.

Called by :func:`bot.pipeline.route.route_item` inside its transaction, so each effect
is queued together with the assignment or not at all. Each is done at most once
per item, whatever the number of routings (a relabel routes again):

- ``hide``: a ``hide_item`` job (:mod:`bot.triage.moderation`) through the channel
  adapter, for Facebook and Instagram comments (the platforms that can hide);
  dedupe key ``rule_hide:<item>``;
- ``auto_ack``: a ``responses`` row with mode ``ack`` and idempotency key
  ``auto_ack:<item>`` (unique), then a ``respond`` job. The item stays open for
  the expert; the acknowledgement counts as the item's ``public_ack_s`` KPI;
- ``notify``: a ``notify_fyi`` job; :func:`bot.notify.outbox.notify_fyi` writes one
  FYI mail per person and item (it looks for one already in the outbox).

Each returns trace lines (shown in the UI and the email with the routing trace).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.notify.compose import draft_reply
from bot.pipeline import queue
from bot.pipeline.rules_schema import Rule
from bot.services import Services
from bot.store.models import Assignment, AuditEntry, Item, Response, utcnow

HIDEABLE = ("facebook", "instagram")
#: kinds that can take a public acknowledgement (a private message cannot)
ACKABLE = ("comment", "post", "mention")


async def _hide(session: AsyncSession, item: Item, rule: Rule) -> str:
    if item.platform not in HIDEABLE or item.kind != "comment":
        return f"hide: not possible for a {item.platform} {item.kind}"
    if item.is_hidden:
        return "hide: already hidden"
    created = await queue.enqueue(
        session, "hide_item", {"item_id": item.id, "hidden": True}, dedupe_key=f"rule_hide:{item.id}", max_attempts=20
    )
    if created:
        session.add(AuditEntry(item_id=item.id, actor="relais", action="hide", detail={"rule": rule.name}, at=utcnow()))
    return "hide: queued"


async def _auto_ack(services: Services, session: AsyncSession, item: Item, rule: Rule, page_name: str) -> str:
    assert rule.auto_ack is not None
    if item.kind not in ACKABLE:
        return f"auto_ack: not for a {item.kind}"
    key = f"auto_ack:{item.id}"
    if await session.scalar(select(Response.id).where(Response.idempotency_key == key)) is not None:
        return "auto_ack: already done"
    text = draft_reply(
        services.templates,
        rule.auto_ack,
        "en" if item.language == "en" else "fr",
        author_name=item.author_name,
        page_name=page_name,
    )
    response = Response(item_id=item.id, expert_id=None, mode="ack", text=text, idempotency_key=key)
    session.add(response)
    await session.flush()
    await queue.enqueue(session, "respond", {"response_id": response.id}, dedupe_key=f"respond:{response.id}")
    return f"auto_ack: queued ({rule.auto_ack})"


async def apply_effects(
    services: Services, session: AsyncSession, item: Item, assignment: Assignment, rule: Rule, page_name: str
) -> list[str]:
    """Queue the rule's hide, auto-acknowledgement and FYI mails; the trace lines that say so."""
    trace: list[str] = []
    if rule.hide:
        trace.append(await _hide(session, item, rule))
    if rule.auto_ack is not None:
        trace.append(await _auto_ack(services, session, item, rule, page_name))
    if rule.notify:
        await queue.enqueue(
            session,
            "notify_fyi",
            {"assignment_id": assignment.id, "to": list(rule.notify)},
            dedupe_key=f"fyi:{assignment.id}",
        )
        trace.append("notify: " + ", ".join(rule.notify))
    return trace
