"""Erasing and exporting what Relais holds about a person.

What an erasure keeps: the item row itself with its platform id (so a
redelivery or a poll does not store it again), its kind, times, channel, status
and labels, and every KPI event (durations with ids, no text): the figures stay
right. What it blanks: the item's text, author (id, name, handle, followers),
permalink and raw platform payload; the explanations of its labels (words of
the text); the bodies of the emails about it; the replies' text; its internal
notes; the details of its audit entries; and the person's reactions counted on
other items. Raw webhook deliveries that mention the person are deleted once
read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import (
    AuditEntry,
    Classification,
    Delivery,
    Email,
    Item,
    ItemNote,
    KpiEvent,
    Response,
    utcnow,
)

ERASED = "[erased]"


async def erase_items(session: AsyncSession, item_ids: Sequence[int], *, now: datetime | None = None) -> int:
    """Blank the text and author data of these items and of everything written about them.

    Runs in the caller's transaction; returns the number of items erased (again).
    """
    if not item_ids:
        return 0
    now = now or utcnow()
    count = 0
    for start in range(0, len(item_ids), 500):
        ids = list(item_ids[start:start + 500])
        result = await session.execute(
            update(Item).where(Item.id.in_(ids)).values(
                text="", author_id="", author_name="", author_handle="", author_followers=None,
                permalink=None, raw={}, erased_at=now,
            )
        )
        count += result.rowcount or 0
        await session.execute(update(Classification).where(Classification.item_id.in_(ids)).values(explanation=[]))
        await session.execute(
            update(Email).where(Email.item_id.in_(ids)).values(subject=ERASED, body_text=ERASED, body_html=None)
        )
        await session.execute(
            update(Response).where(Response.item_id.in_(ids)).values(text=ERASED, ack_text=None)
        )
        await session.execute(update(ItemNote).where(ItemNote.item_id.in_(ids)).values(text=ERASED))
        await session.execute(update(AuditEntry).where(AuditEntry.item_id.in_(ids)).values(detail={}))
    return count


async def author_items(session: AsyncSession, author_id: str, platform: str | None = None) -> list[Item]:
    """Every item the person wrote (their platform user id), oldest first."""
    query = select(Item).where(Item.author_id == author_id)
    if platform:
        query = query.where(Item.platform == platform)
    return list((await session.scalars(query.order_by(Item.created_time, Item.id))).all())


async def _items_with_reactions_of(session: AsyncSession, author_id: str) -> list[Item]:
    rows = await session.scalars(select(Item).where(cast(Item.raw, Text).contains(json.dumps(author_id))))
    return [row for row in rows if author_id in ((row.raw or {}).get("reactors") or {})]


async def _deliveries_mentioning(session: AsyncSession, author_id: str) -> list[Delivery]:
    needle = author_id.encode()
    if session.get_bind().dialect.name == "sqlite":  # SQLite's LIKE never matches a BLOB
        where = func.instr(Delivery.body, needle) > 0
    else:  # PostgreSQL: bytea LIKE bytea
        where = Delivery.body.contains(needle)
    rows = await session.scalars(select(Delivery).where(where))
    return [row for row in rows if _mentions(row.body, author_id)]


def _mentions(body: bytes, author_id: str) -> bool:
    """Does this delivery name the person as an author (not just contain the digits somewhere)?"""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return False
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in ("from", "sender"):
                who = node.get(key)
                if isinstance(who, dict) and str(who.get("id")) == author_id:
                    return True
            if str(node.get("sender_id", "")) == author_id:
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


async def erase_author(session: AsyncSession, author_id: str, platform: str | None = None) -> dict[str, int]:
    """``relais privacy erase``: erase the person's items, reactions and raw deliveries."""
    items = await author_items(session, author_id, platform)
    erased = await erase_items(session, [item.id for item in items])
    reactions = 0
    for row in await _items_with_reactions_of(session, author_id):
        if platform and row.platform != platform:
            continue
        reactors = {k: v for k, v in (row.raw.get("reactors") or {}).items() if k != author_id}
        counts: dict[str, int] = {}
        for kind in reactors.values():
            counts[kind] = counts.get(kind, 0) + 1
        row.raw = {**row.raw, "reactors": reactors, "reactions": counts}
        reactions += 1
    deliveries = [d.id for d in await _deliveries_mentioning(session, author_id) if d.processed_at is not None]
    if deliveries:
        await session.execute(delete(Delivery).where(Delivery.id.in_(deliveries)))
    return {"items": erased, "reactions": reactions, "deliveries": len(deliveries)}


def _row(obj: Any, skip: Iterable[str] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in obj.__table__.columns:
        if column.key in skip:
            continue
        value = getattr(obj, column.key)
        out[column.key] = value.isoformat() if isinstance(value, datetime) else value
    return out


async def export_author(session: AsyncSession, author_id: str, platform: str | None = None) -> dict[str, Any]:
    """``relais privacy export``: everything held about the person, as JSON-ready data."""
    items = await author_items(session, author_id, platform)
    ids = [item.id for item in items]

    async def rows(model: Any, *, skip: Iterable[str] = ()) -> list[dict[str, Any]]:
        if not ids:
            return []
        found = await session.scalars(select(model).where(model.item_id.in_(ids)).order_by(model.id))
        return [_row(row, skip) for row in found]

    reactions = [
        {"item_id": row.id, "platform": row.platform, "external_id": row.external_id,
         "reaction": row.raw["reactors"][author_id]}
        for row in await _items_with_reactions_of(session, author_id)
        if not platform or row.platform == platform
    ]
    deliveries = [
        {"id": d.id, "received_at": d.received_at.isoformat(), "body": d.body.decode("utf-8", "replace")}
        for d in await _deliveries_mentioning(session, author_id)
    ]
    return {
        "author_id": author_id,
        "platform": platform,
        "exported_at": utcnow().isoformat(),
        "items": [_row(item) for item in items],
        "classifications": await rows(Classification),
        "responses": await rows(Response),
        "emails": await rows(Email),
        "notes": await rows(ItemNote),
        "audit": await rows(AuditEntry),
        "kpi_events": await rows(KpiEvent),
        "reactions": reactions,
        "webhook_deliveries": deliveries,
    }
