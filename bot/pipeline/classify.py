"""Classify stage: label an item with the model, or send it to review when unsure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.pipeline import queue
from bot.services import Services
from bot.store.models import Classification, Item
from bot.store.queries import item_by_external_id
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
    for external_id in (item.parent_external_id, item.thread_external_id):
        if external_id and external_id != item.external_id:  # an X root tweet is its own conversation
            parent = await item_by_external_id(session, item.platform, external_id)
            if parent is not None:
                return parent
    return None


async def parent_is_ad(session: AsyncSession, item: Item) -> bool:
    parent = await thread_parent(session, item)
    if parent is None:
        return False
    if parent.is_ad:
        return True
    root = await thread_parent(session, parent) if parent.kind != "post" else None  # a reply to a reply
    return bool(root and root.is_ad)


async def ad_parents(session: AsyncSession, items: Sequence[Item]) -> dict[int, bool]:
    """:func:`parent_is_ad` for many items, in two queries at most (parents, then their parents)."""
    found: dict[tuple[str, str], _Parent] = {}

    async def fetch(wanted: set[tuple[str, str]]) -> None:
        wanted -= found.keys()
        for platform in {p for p, _ in wanted}:
            ids = [e for p, e in wanted if p == platform]
            for start in range(0, len(ids), 500):
                rows = await session.execute(
                    select(Item.platform, Item.external_id, Item.is_ad, Item.kind, Item.parent_external_id, Item.thread_external_id)
                    .where(Item.platform == platform, Item.external_id.in_(ids[start : start + 500]))
                )
                for row in rows.all():
                    found[(row[0], row[1])] = _Parent(*row)

    def parent_of(item: Item | _Parent) -> _Parent | None:
        for external_id in (item.parent_external_id, item.thread_external_id):
            if external_id and external_id != item.external_id and (item.platform, external_id) in found:
                return found[(item.platform, external_id)]
        return None

    def candidates(item: Item | _Parent) -> set[tuple[str, str]]:
        return {
            (item.platform, e) for e in (item.parent_external_id, item.thread_external_id) if e and e != item.external_id
        }

    await fetch(set().union(*(candidates(i) for i in items)) if items else set())
    parents = {item.id: parent_of(item) for item in items}
    await fetch(set().union(set(), *(candidates(p) for p in parents.values() if p and not p.is_ad and p.kind != "post")))
    result: dict[int, bool] = {}
    for item in items:
        parent = parents[item.id]
        root = parent_of(parent) if parent is not None and not parent.is_ad and parent.kind != "post" else None
        result[item.id] = bool(parent and (parent.is_ad or (root and root.is_ad)))
    return result


@dataclass(frozen=True)
class _Parent:
    platform: str
    external_id: str
    is_ad: bool
    kind: str
    parent_external_id: str | None
    thread_external_id: str | None


def item_ids(payloads: Iterable[Mapping[str, Any]], key: str = "item_id") -> list[int]:
    """The ids named by job payloads, ``{"item_ids": [...]}`` or the older ``{"item_id": N}``,
    in order, each once."""
    ids: list[int] = []
    for payload in payloads:
        many = payload.get(key + "s")
        ids += [int(i) for i in many] if isinstance(many, list) else [int(payload[key])] if key in payload else []
    return list(dict.fromkeys(ids))


async def classify_item(services: Services, item_id: int, *, relabel_only: bool = False) -> None:
    await classify_items(services, [item_id], relabel_only=relabel_only)


async def classify_items(services: Services, ids: Sequence[int], *, relabel_only: bool = False) -> None:
    """Label the items, the model scoring them together (idempotent: an item already
    labelled for its current text, or no longer waiting for a label, is skipped); the
    labelled ones are queued for routing in one job."""
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
            await queue.enqueue(
                session, "route", {"item_ids": [i for i, _, _ in labelled]}, dedupe_key=f"route-batch:{classifications[0].id}"
            )
    if relabel_only:
        return
    services.wake()
    for item_id, prediction, review in labelled:
        services.announce("item.classified", {"item_id": item_id, "label": prediction.label, "confidence": prediction.confidence, "needs_review": review})
