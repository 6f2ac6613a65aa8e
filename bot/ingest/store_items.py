"""Store what a platform reported, once per platform object, and queue it for classification.

The single entry point for webhooks, polling and ``relais import``: dedupe on
(platform, external id), so a redelivery or a poll that overlaps a webhook
changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain import ChangeVerb, InboundItem
from bot.ingest.facebook_delivery import Reaction
from bot.kpi import events
from bot.pipeline import queue
from bot.privacy.erase import erase_items
from bot.store.db import dialect_insert
from bot.store.models import Channel, Item, utcnow

log = logging.getLogger(__name__)

#: platforms whose channels get webhooks: what a poll stores first there, a webhook missed.
WEBHOOK_PLATFORMS = ("facebook", "instagram")

#: statuses in which no expert has the item yet: an edit there is classified (and routed) again.
RECLASSIFY_ON_EDIT = ("new", "classified", "needs_review", "triage")
#: once an expert has it, an edit is classified again (the label is kept for the record and
#: the reply page) but not routed again: the expert keeps the item and their reply link
RELABEL_ON_EDIT = ("routed", "notified")


@dataclass
class IngestResult:
    new: list[int] = field(default_factory=list)
    duplicates: int = 0
    updated: list[int] = field(default_factory=list)


def _text(value: str) -> str:
    """Platform text as stored: NUL characters (valid JSON, refused by PostgreSQL) removed."""
    return value.replace("\x00", "")


def _row(item: InboundItem, channel: Channel | None, source: str) -> dict[str, object]:
    now = utcnow()
    is_own = item.is_brand_post
    return {
        "channel_id": channel.id if channel else None,
        "platform": item.platform.value,
        "external_id": _text(item.external_id),
        "kind": item.kind.value,
        "parent_external_id": item.parent_external_id,
        "thread_external_id": item.thread_external_id,
        "author_id": _text(item.author.id),
        "author_name": _text(item.author.name),
        "author_handle": _text(item.author.handle),
        "author_followers": item.author.followers,
        "text": _text(item.text),
        "created_time": item.created_time,
        "received_at": now,
        "permalink": item.permalink,
        "raw": item.raw,
        "is_brand_post": is_own,
        "is_ad": item.is_ad,
        "status": "brand" if is_own else "new",
        "source": source,
    }


async def _apply_change(session: AsyncSession, item: InboundItem, result: IngestResult) -> None:
    row = await session.scalar(
        select(Item).where(Item.platform == item.platform.value, Item.external_id == item.external_id)
    )
    if row is None:
        return
    if row.erased_at is not None:
        return  # erased (retention, privacy erase, deleted on the platform): nothing comes back
    if item.verb is ChangeVerb.REMOVE:  # deleted on the platform: erase, not only hide
        row.status = "removed"
        await erase_items(session, [row.id])
        result.updated.append(row.id)
        return
    elif item.verb is ChangeVerb.HIDE:
        row.is_hidden = True
    elif item.verb is ChangeVerb.UNHIDE:
        row.is_hidden = False
    elif item.verb is ChangeVerb.EDIT and _text(item.text) != row.text:
        row.text = _text(item.text)
        if row.status in RECLASSIFY_ON_EDIT:
            row.status = "new"
            await queue.enqueue(session, "classify", {"item_id": row.id})
        elif row.status in RELABEL_ON_EDIT:
            await queue.enqueue(session, "classify", {"item_id": row.id, "relabel_only": True})
    if item.is_ad and not row.is_ad:
        row.is_ad = True
    result.updated.append(row.id)


async def _count_reaction(session: AsyncSession, reaction: Reaction, result: IngestResult) -> None:
    """Count a reaction on the stored object it reacts to, in its ``raw``.

    ``raw["reactors"]`` maps each person to their current reaction, so a
    redelivery or a changed reaction never counts twice; ``raw["reactions"]``
    is the count per type. A reaction to an object not stored (yet) is dropped.
    """
    row = await session.scalar(
        select(Item).where(Item.platform == reaction.platform.value, Item.external_id == reaction.external_id)
        .with_for_update()
    )
    if row is None:
        log.debug("reaction on %s, which is not stored: not counted", reaction.external_id)
        return
    reactors = dict((row.raw or {}).get("reactors") or {})
    if reaction.verb is ChangeVerb.REMOVE:
        reactors.pop(reaction.author.id, None)
    else:
        reactors[reaction.author.id] = reaction.reaction_type
    counts: dict[str, int] = {}
    for kind in reactors.values():
        counts[kind] = counts.get(kind, 0) + 1
    row.raw = {**(row.raw or {}), "reactors": reactors, "reactions": counts}  # a new dict: JSON is not mutable-tracked
    result.updated.append(row.id)


async def store_items(
    session: AsyncSession, channel: Channel | None, items: Iterable[InboundItem], *, source: str
) -> IngestResult:
    """Insert new items (each platform object once) and queue the ones to answer.

    Runs in the caller's transaction. New items are inserted together (a few multi-row
    ``INSERT ... ON CONFLICT DO NOTHING``); edits, removals and reactions are applied in
    the order they come, after the additions before them. Brand posts are stored (so
    comments know their parent and whether it is an ad) but never queued; neither are
    items from ``relais import`` (history). The items to answer are queued for
    classification, in jobs of up to 100 ids (``queue.enqueue_chunks``).
    """
    result = IngestResult()
    to_answer: list[int] = []
    added: list[InboundItem] = []
    for item in items:
        if isinstance(item, Reaction) or item.verb is not ChangeVerb.ADD:
            to_answer += await _insert_new(session, channel, added, source, result)
            added = []
            if isinstance(item, Reaction):
                await _count_reaction(session, item, result)
            else:
                await _apply_change(session, item, result)
            continue
        added.append(item)
    to_answer += await _insert_new(session, channel, added, source, result)
    if to_answer:
        await queue.enqueue_chunks(session, "classify", "item_ids", to_answer, "classify-batch")
    return result


async def _insert_new(
    session: AsyncSession, channel: Channel | None, items: list[InboundItem], source: str, result: IngestResult
) -> list[int]:
    """Insert the items not stored yet; returns the ids of those to answer."""
    if not items:
        return []
    rows = {}
    seen_again: list[InboundItem] = []
    for item in items:
        row = _row(item, channel, source)
        key = (str(row["platform"]), str(row["external_id"]))
        if key in rows:
            seen_again.append(item)
        else:
            rows[key] = (item, row)
    # One compiled statement for any number of rows: SQLAlchemy sends them as multi-row
    # INSERTs ("insertmanyvalues"); .values([...]) would compile a new statement per batch size.
    items = Item.__table__
    stmt = (
        dialect_insert(session)(items)
        .on_conflict_do_nothing(index_elements=["platform", "external_id"])
        .returning(items.c.id, items.c.platform, items.c.external_id)
    )
    result_rows = await session.execute(stmt, [row for _, row in rows.values()])
    stored = {(platform, external_id): item_id for item_id, platform, external_id in result_rows.all()}
    to_answer: list[int] = []
    lags = []
    for key, (item, row) in rows.items():
        item_id = stored.get(key)
        if item_id is None:
            seen_again.append(item)
            continue
        result.new.append(item_id)
        if item.is_brand_post or source == "import":
            continue  # imported history is stored as it was, not answered again
        if source in ("webhook", "poll"):  # a backfill of last week says nothing about ingest lag
            received = row["received_at"]
            assert isinstance(received, datetime)
            lags.append(events.row(events.INGEST_LAG, item_id, channel.id if channel else None,
                                   events.elapsed(item.created_time, received), received))
        to_answer.append(item_id)
    await events.record_many(session, lags)
    for item in seen_again:
        result.duplicates += 1
        if item.is_ad:  # a later look may learn that a stored post is an ad
            await _apply_change(session, item, IngestResult())
    return to_answer


async def recovered_by_polling(session: AsyncSession) -> dict[int, int]:
    """Per channel id, the items a poll stored first on a channel fed by webhooks.

    Counted: customer items (not the Page's own posts) created after the
    channel was connected, whose row says ``source = 'poll'`` (the first
    writer wins, so a webhook arriving later does not change it). A figure
    that grows means webhook deliveries are being lost. A webhook that arrives
    after the poll that found the same item also counts (a race, rare with a
    reconcile interval of minutes).
    """
    counts: dict[int, int] = {}
    channels = (await session.execute(
        select(Channel.id, Channel.created_at).where(Channel.platform.in_(WEBHOOK_PLATFORMS))
    )).all()
    for channel_id, connected_at in channels:
        counts[int(channel_id)] = int(await session.scalar(
            select(func.count()).select_from(Item).where(
                Item.channel_id == channel_id,
                Item.source == "poll",
                Item.is_brand_post.is_(False),
                # platform times are whole seconds
                Item.created_time >= connected_at.replace(microsecond=0),
            )
        ) or 0)
    return counts
