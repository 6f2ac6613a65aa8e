"""One item in full: its history in time order, and who else has it open.

    history   audit log (who did what) + model and human labels + assignments
              (rules or a person) + replies + emails, merged by time
    viewers   ``item_viewers`` heartbeats: a page open on an item beats every few
              seconds; someone whose last beat is older than ``VIEWER_TTL`` has left
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.db import dialect_insert
from bot.store.models import (
    Assignment,
    AuditEntry,
    Classification,
    Email,
    Expert,
    ItemNote,
    ItemViewer,
    Response,
    User,
    utcnow,
)

VIEWER_TTL = timedelta(seconds=30)


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    kind: str  # audit | label | assignment | response | email | note
    actor: str
    action: str
    detail: dict[str, Any] = field(default_factory=dict)


async def item_history(session: AsyncSession, item_id: int) -> list[HistoryEntry]:
    """Everything that happened to the item, oldest first."""
    entries: list[HistoryEntry] = []
    replied_by: dict[int, str] = {}
    for a in (await session.scalars(select(AuditEntry).where(AuditEntry.item_id == item_id))).all():
        if a.action == "reply":
            replied_by[int((a.detail or {}).get("response_id", 0))] = a.actor
        if a.action in ("reclassify", "assign", "reassign", "note", "reply"):
            continue  # shown from their own rows below
        entries.append(HistoryEntry(a.at, "audit", a.actor, a.action, dict(a.detail or {})))
    for c in (await session.scalars(select(Classification).where(Classification.item_id == item_id))).all():
        entries.append(HistoryEntry(
            c.created_at, "label", c.created_by or "relais", "human_label" if c.source == "human" else "model_label",
            {"label": c.label, "confidence": c.confidence, "model_version": c.model_version},
        ))
    rows = (await session.execute(
        select(Assignment, Expert.email).outerjoin(Expert, Expert.id == Assignment.expert_id)
        .where(Assignment.item_id == item_id)
    )).all()
    for asg, email in rows:
        entries.append(HistoryEntry(
            asg.assigned_at, "assignment", asg.assigned_by or "relais", "assigned" if email else "triage",
            {"expert": email, "rule": asg.rule_name, "rules_version": asg.rules_version},
        ))
    for r in (await session.scalars(select(Response).where(Response.item_id == item_id))).all():
        actor = replied_by.get(r.id) or "relais"
        if r.id not in replied_by and r.expert_id is not None:
            actor = await session.scalar(select(Expert.email).where(Expert.id == r.expert_id)) or actor
        entries.append(HistoryEntry(
            r.created_at, "response", actor, "reply",
            {"mode": r.mode, "status": r.status, "text": r.text, "error": r.error, "sent_at": r.sent_at},
        ))
    for e in (await session.scalars(select(Email).where(Email.item_id == item_id))).all():
        entries.append(HistoryEntry(e.created_at, "email", "relais", e.kind, {"to": e.to_address, "status": e.status}))
    notes = (await session.execute(
        select(ItemNote, User.name, User.email).join(User, User.id == ItemNote.user_id).where(ItemNote.item_id == item_id)
    )).all()
    for note, name, email in notes:
        entries.append(HistoryEntry(note.created_at, "note", name or email, "note", {"text": note.text}))
    kinds = ("label", "assignment", "email", "response", "note", "audit")
    entries.sort(key=lambda e: (e.at, kinds.index(e.kind)))
    return entries


async def beat(session: AsyncSession, item_id: int, user_id: int, *, now: datetime | None = None) -> None:
    """Record that ``user_id`` has the item open now (insert or refresh the heartbeat)."""
    now = now or utcnow()
    stmt = dialect_insert(session)(ItemViewer).values(item_id=item_id, user_id=user_id, seen_at=now)
    await session.execute(stmt.on_conflict_do_update(index_elements=["item_id", "user_id"], set_={"seen_at": now}))


async def leave(session: AsyncSession, item_id: int, user_id: int) -> None:
    await session.execute(delete(ItemViewer).where(ItemViewer.item_id == item_id, ItemViewer.user_id == user_id))


async def other_viewers(
    session: AsyncSession, item_id: int, user_id: int, *, now: datetime | None = None
) -> list[str]:
    """Names of the other people who have the item open (a fresh heartbeat)."""
    since = (now or utcnow()) - VIEWER_TTL
    rows = await session.execute(
        select(User.name, User.email)
        .join(ItemViewer, ItemViewer.user_id == User.id)
        .where(ItemViewer.item_id == item_id, ItemViewer.user_id != user_id, ItemViewer.seen_at >= since)
        .order_by(User.name)
    )
    return [name or email for name, email in rows.all()]


async def forget_stale_viewers(session: AsyncSession, *, now: datetime | None = None) -> None:
    """Drop heartbeats long gone (kept small; called now and then)."""
    await session.execute(delete(ItemViewer).where(ItemViewer.seen_at < (now or utcnow()) - 10 * VIEWER_TTL))


__all__ = ["HistoryEntry", "beat", "forget_stale_viewers", "item_history", "leave", "other_viewers"]
