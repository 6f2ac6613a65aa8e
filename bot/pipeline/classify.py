"""Classify stage: label an item with the model, or send it to review when unsure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from functools import partial

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.pipeline import queue
from bot.services import Services
from bot.store.models import Classification, Item
from classifiers import Context, Prediction

log = logging.getLogger(__name__)

#: below this confidence an item goes to the community manager's triage queue; used for a
#: label the model has no threshold for (a model trained before calibration has none)
REVIEW_THRESHOLDS = {"complaint": 0.40, "product_feedback": 0.45, "ad_reaction": 0.45, "other": 0.45}


def needs_review(prediction: Prediction, thresholds: Mapping[str, float] | None = None) -> bool:
    """True when the confidence is under the model's own threshold for the label (chosen on
    held-out data, ``Model.review_thresholds``), else under ``REVIEW_THRESHOLDS``."""
    fallback = REVIEW_THRESHOLDS.get(prediction.label, 0.5)
    limit = thresholds.get(prediction.label, fallback) if thresholds else fallback
    return prediction.confidence < limit


async def thread_parent(session: AsyncSession, item: Item) -> Item | None:
    """The post an item answers (its direct parent, else its thread's root), if stored."""
    return (await thread_parents(session, [item])).get(item.id)


async def parent_is_ad(session: AsyncSession, item: Item) -> bool:
    """Whether the item answers an ad: its parent is one, or, for a reply to a reply, the post above."""
    return (await ad_parents(session, [item]))[item.id]


def _parent_refs(item: Item) -> list[str]:
    """The external ids :func:`thread_parent` looks for, in its order (an X root tweet is its own conversation)."""
    return [ref for ref in (item.parent_external_id, item.thread_external_id) if ref and ref != item.external_id]


async def thread_parents(session: AsyncSession, items: Sequence[Item]) -> dict[int, Item]:
    """:func:`thread_parent` of each item (item id -> the post it answers, if stored), in one query."""
    platforms = {item.platform for item in items if _parent_refs(item)}
    refs = {ref for item in items for ref in _parent_refs(item)}
    if not refs:
        return {}
    rows = await session.scalars(select(Item).where(Item.platform.in_(platforms), Item.external_id.in_(refs)))
    found = {(row.platform, row.external_id): row for row in rows}
    parents: dict[int, Item] = {}
    for item in items:
        parent = next((found[key] for key in ((item.platform, ref) for ref in _parent_refs(item)) if key in found), None)
        if parent is not None:
            parents[item.id] = parent
    return parents


async def ad_parents(session: AsyncSession, items: Sequence[Item]) -> dict[int, bool]:
    """:func:`parent_is_ad` for many items, in two queries (parents, then their parents)."""
    parents = await thread_parents(session, items)
    roots = await thread_parents(session, [p for p in parents.values() if not p.is_ad and p.kind != "post"])
    return {
        item.id: bool((parent := parents.get(item.id)) and (parent.is_ad or ((root := roots.get(parent.id)) and root.is_ad)))
        for item in items
    }


async def classify_item(services: Services, item_id: int, *, relabel_only: bool = False) -> None:
    await classify_items(services, [item_id], relabel_only=relabel_only)


async def classify_items(services: Services, ids: Sequence[int], *, relabel_only: bool = False) -> None:
    """Label the items, the model scoring them together (idempotent: an item already
    labelled for its current text, or no longer waiting for a label, is skipped); the
    labelled ones are queued for routing (jobs of up to 100 ids)."""
    wanted = ("routed", "notified") if relabel_only else ("new",)
    async with services.sessions() as session:
        items = [i for i in (await session.scalars(select(Item).where(Item.id.in_(ids)).order_by(Item.id))).all() if i.status in wanted]
        if not items:
            return
        ads = await ad_parents(session, items)
        texts = {item.id: item.text for item in items}
        contexts = [Context(platform=item.platform, kind=item.kind, parent_is_ad=ads[item.id]) for item in items]
    order = [item.id for item in items]
    loop = asyncio.get_running_loop()
    predictions = dict(zip(order, await loop.run_in_executor(
        None, partial(services.model.predict, [texts[i] for i in order], contexts)
    ), strict=True))
    thresholds = services.model.review_thresholds
    labelled: list[tuple[int, Prediction, bool]] = []
    async with services.sessions.begin() as session:
        rows = (await session.scalars(select(Item).where(Item.id.in_(order)).order_by(Item.id).with_for_update())).all()
        classifications = []
        for item in rows:
            if item.status not in wanted or item.text != texts[item.id]:
                continue  # edited, removed or answered meanwhile: the edit queued its own classification
            prediction = predictions[item.id]
            classifications.append(Classification(
                item_id=item.id,
                label=prediction.label,
                confidence=prediction.confidence,
                model_version=prediction.model_version,
                source="model",
                explanation=list(prediction.explanation),
            ))
            item.language = prediction.language
            review = needs_review(prediction, thresholds)
            if not relabel_only:  # an edit after the expert was notified: new label, same expert and link
                item.status = "needs_review" if review else "classified"
            labelled.append((item.id, prediction, review))
        session.add_all(classifications)
        await session.flush()
        if labelled and not relabel_only:
            await queue.enqueue_chunks(session, "route", "item_ids", [i for i, _, _ in labelled], "route-batch",
                                       key_ids=[c.id for c in classifications])
    if relabel_only:
        return
    services.wake()
    for item_id, prediction, review in labelled:
        services.announce("item.classified", {"item_id": item_id, "label": prediction.label, "confidence": prediction.confidence, "needs_review": review})
