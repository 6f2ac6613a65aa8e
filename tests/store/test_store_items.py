"""store_items on SQLite and PostgreSQL: dedupe, brand posts, changes, imported history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.domain import Author, ChangeVerb, InboundItem, ItemKind, Platform
from bot.ingest.store_items import IngestResult, store_items
from bot.store import db
from bot.store.models import Channel, Item, Job, KpiEvent

MONTREAL = timezone(timedelta(hours=-5))
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await asyncio.to_thread(db.upgrade, database_url)
    engine = db.create_engine(database_url)
    try:
        yield db.sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def channel(sessions: async_sessionmaker[AsyncSession]) -> Channel:
    async with sessions.begin() as session:
        row = Channel(platform="facebook", external_id="page-1", name="Boulangerie", credentials={})
        session.add(row)
    return row


def inbound(external_id: str = "page-1_post-1_c1", **changes: object) -> InboundItem:
    item = InboundItem(
        platform=Platform.FACEBOOK,
        external_id=external_id,
        kind=ItemKind.COMMENT,
        channel_external_id="page-1",
        author=Author(id="u1", name="Zoé Gagnon"),
        text="Mon croissant était rassis 😡",
        created_time=datetime(2026, 11, 20, 9, 15, tzinfo=MONTREAL),
        parent_external_id="page-1_post-1",
    )
    return replace(item, **changes)  # type: ignore[arg-type]


async def store(
    sessions: Sessions, channel: Channel | None, *items: InboundItem, source: str = "webhook"
) -> IngestResult:
    async with sessions.begin() as session:
        return await store_items(session, channel, list(items), source=source)


async def item_row(sessions: async_sessionmaker[AsyncSession], external_id: str) -> Item:
    async with sessions() as session:
        row = await session.scalar(select(Item).where(Item.external_id == external_id))
    assert row is not None
    return row


async def classify_jobs(sessions: async_sessionmaker[AsyncSession], item_id: int) -> list[Job]:
    async with sessions() as session:
        jobs = (await session.scalars(select(Job).where(Job.kind == "classify"))).all()
    return [j for j in jobs if item_id in j.payload.get("item_ids", [j.payload.get("item_id")])]


async def count(sessions: async_sessionmaker[AsyncSession], model: type) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_new_item_is_stored_with_a_classify_job(sessions: Sessions, channel: Channel) -> None:
    result = await store(sessions, channel, inbound())
    [item_id] = result.new
    assert result.duplicates == 0
    row = await item_row(sessions, "page-1_post-1_c1")
    assert row.id == item_id
    assert row.channel_id == channel.id
    assert row.status == "new" and row.source == "webhook"
    assert row.text == "Mon croissant était rassis 😡"
    assert row.author_name == "Zoé Gagnon"
    assert row.created_time == datetime(2026, 11, 20, 14, 15, tzinfo=UTC)
    assert row.parent_external_id == "page-1_post-1"
    assert not row.is_hidden and not row.is_brand_post
    [job] = await classify_jobs(sessions, item_id)
    assert job.status == "queued"
    async with sessions() as session:
        lag = await session.scalar(select(KpiEvent).where(KpiEvent.item_id == item_id, KpiEvent.name == "ingest_lag_s"))
    assert lag is not None and lag.seconds >= 0


async def test_same_platform_object_again_is_a_duplicate(sessions: Sessions, channel: Channel) -> None:
    [item_id] = (await store(sessions, channel, inbound())).new
    again = await store(sessions, channel, inbound(text="autre texte"))
    assert again.new == [] and again.duplicates == 1
    assert await count(sessions, Item) == 1
    assert len(await classify_jobs(sessions, item_id)) == 1
    assert (await item_row(sessions, "page-1_post-1_c1")).text == "Mon croissant était rassis 😡"


async def test_duplicate_within_one_batch(sessions: Sessions, channel: Channel) -> None:
    result = await store(sessions, channel, inbound(), inbound())
    assert len(result.new) == 1 and result.duplicates == 1
    assert await count(sessions, Item) == 1
    assert len(await classify_jobs(sessions, result.new[0])) == 1


async def test_same_id_on_another_platform_is_a_different_item(sessions: Sessions, channel: Channel) -> None:
    result = await store(sessions, channel, inbound("123"), inbound("123", platform=Platform.X, kind=ItemKind.MENTION))
    assert len(result.new) == 2 and result.duplicates == 0


async def test_brand_post_is_stored_without_a_job(sessions: Sessions, channel: Channel) -> None:
    post = inbound("page-1_post-1", kind=ItemKind.POST, text="Nouvelle galette !", is_brand_post=True, parent_external_id=None)
    [item_id] = (await store(sessions, channel, post)).new
    row = await item_row(sessions, "page-1_post-1")
    assert row.status == "brand" and row.is_brand_post
    assert await classify_jobs(sessions, item_id) == []


async def test_add_with_is_ad_marks_a_stored_post(sessions: Sessions, channel: Channel) -> None:
    post = inbound("page-1_post-1", kind=ItemKind.POST, is_brand_post=True, parent_external_id=None)
    await store(sessions, channel, post)
    assert not (await item_row(sessions, "page-1_post-1")).is_ad
    again = await store(sessions, channel, replace(post, is_ad=True))
    assert again.new == [] and again.duplicates == 1
    assert (await item_row(sessions, "page-1_post-1")).is_ad
    assert await count(sessions, Item) == 1


async def test_add_without_is_ad_does_not_clear_it(sessions: Sessions, channel: Channel) -> None:
    post = inbound("page-1_post-1", kind=ItemKind.POST, is_brand_post=True, is_ad=True, parent_external_id=None)
    await store(sessions, channel, post)
    await store(sessions, channel, replace(post, is_ad=False))
    assert (await item_row(sessions, "page-1_post-1")).is_ad


async def test_edit_updates_text_and_requeues_while_unanswered(sessions: Sessions, channel: Channel) -> None:
    [item_id] = (await store(sessions, channel, inbound())).new
    async with sessions.begin() as session:
        row = await session.get(Item, item_id)
        assert row is not None
        row.status = "needs_review"  # classified, waiting for routing: nobody has it yet
    result = await store(sessions, channel, inbound(text="Mon croissant était rassis 😡 et froid", verb=ChangeVerb.EDIT))
    assert result.updated == [item_id] and result.new == []
    row = await item_row(sessions, "page-1_post-1_c1")
    assert row.text == "Mon croissant était rassis 😡 et froid"
    assert row.status == "new"
    jobs = await classify_jobs(sessions, item_id)
    assert len(jobs) == 2 and all(j.status == "queued" for j in jobs)


@pytest.mark.parametrize("status", ["new", "classified", "needs_review", "triage"])
async def test_edit_requeues_while_no_expert_has_the_item(sessions: Sessions, channel: Channel, status: str) -> None:
    """'triage' (waiting for the community manager, nobody answered yet) is classified again too."""
    [item_id] = (await store(sessions, channel, inbound())).new
    async with sessions.begin() as session:
        row = await session.get(Item, item_id)
        assert row is not None
        row.status = status
    await store(sessions, channel, inbound(text="texte modifié", verb=ChangeVerb.EDIT))
    row = await item_row(sessions, "page-1_post-1_c1")
    assert row.text == "texte modifié"
    assert row.status == "new"
    assert len(await classify_jobs(sessions, item_id)) == 2


@pytest.mark.parametrize("status", ["routed", "notified", "answered"])
async def test_edit_once_an_expert_has_the_item_keeps_its_expert(
    sessions: Sessions, channel: Channel, status: str
) -> None:
    """The expert's reply page shows the new text; the item is not routed to someone else.
    While unanswered it is relabelled (a ``relabel_only`` classify job); once answered, not."""
    [item_id] = (await store(sessions, channel, inbound())).new
    async with sessions.begin() as session:
        row = await session.get(Item, item_id)
        assert row is not None
        row.status = status
    result = await store(sessions, channel, inbound(text="merci, c'est réglé", verb=ChangeVerb.EDIT))
    assert result.updated == [item_id]
    row = await item_row(sessions, "page-1_post-1_c1")
    assert row.text == "merci, c'est réglé" and row.status == status
    jobs = await classify_jobs(sessions, item_id)
    if status == "answered":
        assert len(jobs) == 1
    else:
        assert len(jobs) == 2
        assert sorted(j.payload.get("relabel_only", False) for j in jobs) == [False, True]


async def test_edit_with_the_same_text_queues_nothing(sessions: Sessions, channel: Channel) -> None:
    [item_id] = (await store(sessions, channel, inbound())).new
    await store(sessions, channel, inbound(verb=ChangeVerb.EDIT))
    assert (await item_row(sessions, "page-1_post-1_c1")).status == "new"
    assert len(await classify_jobs(sessions, item_id)) == 1


async def test_remove_erases_text_and_marks_removed(sessions: Sessions, channel: Channel) -> None:
    [item_id] = (await store(sessions, channel, inbound())).new
    result = await store(sessions, channel, inbound(text="", verb=ChangeVerb.REMOVE))
    assert result.updated == [item_id]
    row = await item_row(sessions, "page-1_post-1_c1")
    assert row.text == "" and row.status == "removed"
    assert await count(sessions, Item) == 1


async def test_hide_and_unhide_toggle_is_hidden(sessions: Sessions, channel: Channel) -> None:
    [item_id] = (await store(sessions, channel, inbound())).new
    await store(sessions, channel, inbound(verb=ChangeVerb.HIDE))
    row = await item_row(sessions, "page-1_post-1_c1")
    assert row.is_hidden and row.text == "Mon croissant était rassis 😡" and row.status == "new"
    await store(sessions, channel, inbound(verb=ChangeVerb.UNHIDE))
    assert not (await item_row(sessions, "page-1_post-1_c1")).is_hidden
    assert len(await classify_jobs(sessions, item_id)) == 1


async def test_change_for_an_unknown_item_stores_nothing(sessions: Sessions, channel: Channel) -> None:
    result = await store(sessions, channel, inbound("never-seen", verb=ChangeVerb.REMOVE))
    assert result.new == [] and result.updated == []
    assert await count(sessions, Item) == 0


async def test_imported_items_are_not_queued(sessions: Sessions) -> None:
    result = await store(sessions, None, inbound("old-1"), inbound("old-2", text="Super pain"), source="import")
    assert len(result.new) == 2
    assert await count(sessions, Job) == 0
    row = await item_row(sessions, "old-1")
    assert row.source == "import" and row.channel_id is None


async def test_caller_owns_the_transaction(sessions: Sessions, channel: Channel) -> None:
    async with sessions() as session, session.begin():
        result = await store_items(session, channel, [inbound()], source="webhook")
        assert len(result.new) == 1
        await session.rollback()
    assert await count(sessions, Item) == 0
    assert await count(sessions, Job) == 0
