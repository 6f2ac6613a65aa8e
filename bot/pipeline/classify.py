"""Classify stage: label an item with the model, or send it to review when unsure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

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


async def classify_item(services: Services, item_id: int, *, relabel_only: bool = False) -> None:
    """Label the item (idempotent: an item already labelled for its current text is skipped)."""
    async with services.sessions() as session:
        item = await session.get(Item, item_id)
        wanted = ("routed", "notified") if relabel_only else ("new",)
        if item is None or item.status not in wanted:
            return
        context = Context(platform=item.platform, kind=item.kind, parent_is_ad=await parent_is_ad(session, item))
        text = item.text
    loop = asyncio.get_running_loop()
    prediction = await loop.run_in_executor(None, services.model.predict_one, text, context)
    review = needs_review(prediction, services.model.review_thresholds)
    async with services.sessions.begin() as session:
        item = await session.get(Item, item_id, with_for_update=True)
        if item is None or item.status not in wanted or item.text != text:
            return  # edited, removed or answered meanwhile: the edit queued its own classification
        classification = Classification(
            item_id=item.id,
            label=prediction.label,
            confidence=prediction.confidence,
            model_version=prediction.model_version,
            source="model",
            explanation=list(prediction.explanation),
        )
        session.add(classification)
        item.language = prediction.language
        if relabel_only:  # an edit after the expert was notified: new label, same expert and link
            return
        item.status = "needs_review" if review else "classified"
        await session.flush()
        await queue.enqueue(session, "route", {"item_id": item.id}, dedupe_key=f"route:{classification.id}")
    services.wake()
    services.announce("item.classified", {"item_id": item_id, "label": prediction.label, "confidence": prediction.confidence, "needs_review": review})
