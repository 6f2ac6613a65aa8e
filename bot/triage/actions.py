"""What a person does to an item from the triage UI, each with its audit entry.

Every function takes the session and the acting person (``actor``: their email);
the caller owns the transaction and, after the commit, calls ``services.wake()``
(jobs may have been queued) and ``services.announce("item.updated", ...)``.
A refused action raises :class:`ActionRefused` with a reason code the UI
translates; nothing is written then.

    assign      a new ``assignments`` row for the expert (the latest one counts), item
                status ``routed`` and a ``notify`` job: the expert gets the usual email
    reclassify  a ``classifications`` row with ``source="human"``: the label counts from
                now on and ``relais train`` learns from it
    resolve     status ``resolved`` and ``resolved_at``; ``reopen`` restores the status
                it had before (kept in the audit entry)
    hide        a ``hide_item`` job hides (or shows) the comment on the platform through
                the channel adapter (Facebook and Instagram); ``items.is_hidden`` is set
                when the platform has done it
    mark_spam   ``items.is_spam``: the item leaves the open queue
    add_note    an internal ``item_notes`` row, never sent to the platform
    reply       a ``responses`` intent and its ``respond`` job, like the reply page; the
                form's one-time key makes a double submit a single reply
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.pipeline import queue
from bot.pipeline.rules import RuleSet
from bot.store.models import (
    Assignment,
    AuditEntry,
    Classification,
    Expert,
    Item,
    ItemNote,
    Response,
    utcnow,
)
from bot.store.queries import latest_assignment, latest_classification

LABELS = ("complaint", "product_feedback", "ad_reaction", "other")
HIDEABLE = ("facebook", "instagram")  # platforms whose adapter can hide a comment
#: a reply in one of these states is on its way or out: the item takes no second one
ACTIVE_REPLY = ("pending", "sending", "private_sent", "ack_sending", "sent", "in_doubt")
MAX_REPLY_CHARS = 8000
MAX_NOTE_CHARS = 4000


class ActionRefused(Exception):
    """The action cannot be done; ``reason`` is a short code (``no_item``, ``bad_label``...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class BulkResult:
    done: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # item id -> reason


def _audit(session: AsyncSession, item_id: int | None, actor: str, action: str, **detail: Any) -> None:
    session.add(AuditEntry(item_id=item_id, actor=actor, action=action, detail=detail, at=utcnow()))


async def _item(session: AsyncSession, item_id: int) -> Item:
    item = await session.get(Item, item_id, with_for_update=True)
    if item is None:
        raise ActionRefused("no_item", str(item_id))
    return item


async def assign(
    session: AsyncSession, item_id: int, expert_id: int, *, actor: str, rules: RuleSet | None = None
) -> Assignment:
    """Give the item to an expert (first assignment or reassignment) and queue their email."""
    item = await _item(session, item_id)
    expert = await session.get(Expert, expert_id)
    if expert is None:
        raise ActionRefused("no_expert", str(expert_id))
    if item.status in ("removed", "brand", "answered", "imported"):
        raise ActionRefused("closed", item.status)
    before = await latest_assignment(session, item.id)
    now = utcnow()
    default_sla = timedelta(seconds=rules.default_sla_seconds if rules else 4 * 3600)
    assignment = Assignment(
        item_id=item.id,
        expert_id=expert.id,
        rule_name=before.rule_name if before else "manual",
        rules_version=before.rules_version if before else (rules.version if rules else "manual"),
        reply_mode=before.reply_mode if before else (rules.default_reply_mode.value if rules else "public"),
        sla_due=before.sla_due if before else item.created_time + default_sla,
        trace=[*(before.trace if before else []), f"assigned to {expert.email} by {actor}"],
        priority=before.priority if before else "normal",
        assigned_by=actor,
        assigned_at=now,
    )
    session.add(assignment)
    await session.flush()
    previous = before.expert_id if before else None
    item.status, item.resolved_at = "routed", None  # a resolved item assigned again is open again
    await queue.enqueue(session, "notify", {"assignment_id": assignment.id}, dedupe_key=f"notify:{assignment.id}")
    _audit(session, item.id, actor, "reassign" if previous else "assign", expert=expert.email, expert_id=expert.id,
           previous_expert_id=previous)
    return assignment


#: reassigning is assigning again: the latest assignment counts (audit action "reassign")
reassign = assign


async def reclassify(session: AsyncSession, item_id: int, label: str, *, actor: str) -> Classification:
    """Record a person's label (training data for ``relais train``)."""
    if label not in LABELS:
        raise ActionRefused("bad_label", label)
    item = await _item(session, item_id)
    before = await latest_classification(session, item.id)
    row = Classification(
        item_id=item.id, label=label, confidence=1.0, model_version="human", source="human",
        explanation=[], created_by=actor, created_at=utcnow(),
    )
    session.add(row)
    if item.status == "needs_review":
        item.status = "triage"  # a person has looked: it now only needs an expert
    _audit(session, item.id, actor, "reclassify", label=label, previous=before.label if before else None)
    return row


async def resolve(session: AsyncSession, item_id: int, *, actor: str) -> None:
    """Close the item without a reply from Relais (answered elsewhere, nothing to say)."""
    item = await _item(session, item_id)
    if item.status == "resolved":
        raise ActionRefused("already", "resolved")
    _audit(session, item.id, actor, "resolve", previous_status=item.status)
    item.status, item.resolved_at = "resolved", utcnow()


async def reopen(session: AsyncSession, item_id: int, *, actor: str) -> None:
    """Open a resolved item again, in the status it had before it was resolved."""
    item = await _item(session, item_id)
    if item.status != "resolved":
        raise ActionRefused("not_resolved", item.status)
    last = await session.scalar(
        select(AuditEntry)
        .where(AuditEntry.item_id == item.id, AuditEntry.action == "resolve")
        .order_by(AuditEntry.id.desc())
        .limit(1)
    )
    status = str((last.detail or {}).get("previous_status") or "triage") if last else "triage"
    item.status, item.resolved_at = status, None
    _audit(session, item.id, actor, "reopen", status=status)


async def hide(session: AsyncSession, item_id: int, *, actor: str, hidden: bool = True) -> None:
    """Queue hiding (or showing again) the comment on the platform."""
    item = await _item(session, item_id)
    if item.platform not in HIDEABLE or item.kind not in ("comment",):
        raise ActionRefused("cannot_hide", f"{item.platform} {item.kind}")
    if item.is_hidden == hidden:
        raise ActionRefused("already", "hidden" if hidden else "shown")
    n = await session.scalar(
        select(AuditEntry.id).where(AuditEntry.item_id == item.id).order_by(AuditEntry.id.desc()).limit(1)
    )
    await queue.enqueue(session, "hide_item", {"item_id": item.id, "hidden": hidden}, dedupe_key=f"hide:{item.id}:{n or 0}",
                        max_attempts=20)
    _audit(session, item.id, actor, "hide" if hidden else "unhide")


async def mark_spam(session: AsyncSession, item_id: int, *, actor: str, spam: bool = True) -> None:
    item = await _item(session, item_id)
    if item.is_spam == spam:
        raise ActionRefused("already", "spam" if spam else "not spam")
    item.is_spam = spam
    _audit(session, item.id, actor, "spam" if spam else "not_spam")


async def add_note(session: AsyncSession, item_id: int, text: str, *, actor: str, user_id: int) -> ItemNote:
    text = text.strip()
    if not text or len(text) > MAX_NOTE_CHARS:
        raise ActionRefused("bad_note", f"{len(text)} characters")
    item = await _item(session, item_id)
    note = ItemNote(item_id=item.id, user_id=user_id, text=text, created_at=utcnow())
    session.add(note)
    await session.flush()
    _audit(session, item.id, actor, "note", note_id=note.id)
    return note


async def reply(
    session: AsyncSession,
    item_id: int,
    *,
    actor: str,
    mode: str,
    text: str,
    ack_text: str = "",
    form_key: str,
    expert_id: int | None = None,
) -> Response:
    """Store the reply intent and queue its ``respond`` job (the reply page's path).

    ``form_key`` is the form's one-time key: submitting the same form twice finds
    the first reply (``idempotency_key`` is unique) and sends nothing more."""
    text, ack_text = text.strip(), ack_text.strip()
    mode = "public" if mode == "public" else "private"
    if not text:
        raise ActionRefused("empty")
    if len(text) > MAX_REPLY_CHARS or len(ack_text) > 500:
        raise ActionRefused("too_long")
    key = f"ui:{item_id}:{form_key[:64]}"
    existing = await session.scalar(select(Response).where(Response.idempotency_key == key))
    if existing is not None:
        return existing
    item = await _item(session, item_id)
    if mode == "public" and item.kind == "message":
        raise ActionRefused("private_only")
    if item.status in ("removed", "brand"):
        raise ActionRefused("closed", item.status)
    active = await session.scalar(
        select(Response.id)
        .where(Response.item_id == item.id, Response.status.in_(ACTIVE_REPLY), Response.mode != "ack")
        .limit(1)
    )
    if item.status == "answered" or active:
        raise ActionRefused("answered")
    if expert_id is None:
        assignment = await latest_assignment(session, item.id)
        expert_id = assignment.expert_id if assignment else None
    response = Response(
        item_id=item.id,
        expert_id=expert_id,
        mode=mode,
        text=text,
        ack_text=ack_text if mode == "private" and item.kind != "message" and ack_text else None,
        idempotency_key=key,
        status="pending",
    )
    session.add(response)
    await session.flush()  # a simultaneous twin of this form fails here on the unique key
    await queue.enqueue(session, "respond", {"response_id": response.id}, dedupe_key=f"respond:{response.id}", max_attempts=60)
    _audit(session, item.id, actor, "reply", mode=mode, response_id=response.id)
    return response


async def bulk(
    sessions: async_sessionmaker[AsyncSession],
    item_ids: Sequence[int],
    action: Callable[..., Awaitable[Any]],
    *args: Any,
    **kwargs: Any,
) -> BulkResult:
    """Apply ``action(session, item_id, *args, **kwargs)`` to each item, one transaction
    per item: a refused item is reported and skipped, the others go through."""
    result = BulkResult()
    for item_id in dict.fromkeys(item_ids):
        try:
            async with sessions.begin() as session:
                await action(session, item_id, *args, **kwargs)
        except ActionRefused as exc:
            result.refused[item_id] = exc.reason
        else:
            result.done.append(item_id)
    return result
