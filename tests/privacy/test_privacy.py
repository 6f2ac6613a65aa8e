"""Privacy on SQLite and PostgreSQL: per-channel retention (bot/privacy/retention.py), platform
delete events erase the text (bot/ingest/store_items.py), and `relais privacy erase|export`
and `relais channels retention` (bot/privacy/erase.py, bot/privacy/commands.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.cli import main
from bot.domain import Author, ChangeVerb, InboundItem, ItemKind, Platform
from bot.ingest.facebook_delivery import parse_delivery
from bot.ingest.store_items import store_items
from bot.privacy.retention import apply_retention
from bot.services import Services, open_services
from bot.store import db
from bot.store.models import (
    Channel,
    Classification,
    Delivery,
    Email,
    Item,
    ItemNote,
    KpiEvent,
    Response,
    User,
    utcnow,
)
from tests.conftest import make_settings

NOW = utcnow()
PAGE = "104857600012345"


def item(n: int, author: str, days_old: float, text: str = "mon pain était rassis", verb: ChangeVerb = ChangeVerb.ADD,
         reactor: bool = False) -> InboundItem:
    return InboundItem(
        platform=Platform.FACEBOOK, external_id=f"{PAGE}_1_{n}", kind=ItemKind.COMMENT, channel_external_id=PAGE,
        author=Author(id=author, name=f"Client {author}", handle=f"client{author}", followers=10),
        text=text, created_time=NOW - timedelta(days=days_old), verb=verb,
        permalink=f"https://facebook.com/{PAGE}_1_{n}", raw={"message": text, "from": {"id": author}},
    )


async def add_channel(services: Services, external_id: str, retention_days: int | None = None) -> Channel:
    async with services.sessions.begin() as session:
        channel = Channel(platform="facebook", external_id=external_id, name=f"Page {external_id}",
                          credentials={}, retention_days=retention_days)
        session.add(channel)
    return channel


async def store(services: Services, channel: Channel, *items: InboundItem) -> list[int]:
    async with services.sessions.begin() as session:
        row = await session.get(Channel, channel.id)
        return (await store_items(session, row, items, source="webhook")).new


async def add_traces(services: Services, item_id: int) -> None:
    """What the pipeline writes about an item: a label with its cue words, an email, a reply, a note."""
    async with services.sessions.begin() as session:
        session.add(Classification(item_id=item_id, label="complaint", confidence=0.9, model_version="t",
                                   explanation=["rassis", "pain"]))
        session.add(Email(message_id=f"m{item_id}@relais", kind="notification", item_id=item_id, to_address="e@x.fr",
                          subject="Client: mon pain était rassis", body_text="mon pain était rassis"))
        session.add(Response(item_id=item_id, mode="public", text="Désolés Client", idempotency_key=f"r{item_id}"))
        user = User(email=f"cm{item_id}@x.fr", role="community_manager", password_hash="x")
        session.add(user)
        await session.flush()
        session.add(ItemNote(item_id=item_id, user_id=user.id, text="client fidèle, appelle souvent"))


async def snapshot(services: Services, item_id: int) -> dict[str, Any]:
    async with services.sessions() as session:
        row = await session.get(Item, item_id)
        assert row is not None
        return {
            "text": row.text, "author": (row.author_id, row.author_name, row.author_handle, row.author_followers),
            "raw": row.raw, "permalink": row.permalink, "erased": row.erased_at is not None, "status": row.status,
            "explanations": (await session.scalars(select(Classification.explanation).where(Classification.item_id == item_id))).all(),
            "emails": (await session.scalars(select(Email.body_text).where(Email.item_id == item_id))).all(),
            "replies": (await session.scalars(select(Response.text).where(Response.item_id == item_id))).all(),
            "notes": (await session.scalars(select(ItemNote.text).where(ItemNote.item_id == item_id))).all(),
            "kpi": await session.scalar(select(func.count()).select_from(KpiEvent).where(KpiEvent.item_id == item_id)),
        }


def assert_erased(snap: dict[str, Any]) -> None:
    assert snap["erased"] and snap["text"] == "" and snap["raw"] == {} and snap["permalink"] is None
    assert snap["author"] == ("", "", "", None)
    assert all(explanation == [] for explanation in snap["explanations"])
    assert "rassis" not in json.dumps(snap, ensure_ascii=False)
    assert "fidèle" not in json.dumps(snap, ensure_ascii=False)


async def test_retention_erases_old_items_per_channel_and_keeps_kpi_events(services: Services) -> None:
    short = await add_channel(services, PAGE, retention_days=30)
    other = await add_channel(services, "999")
    old, recent = await store(services, short, item(1, "501", days_old=40), item(2, "502", days_old=5))
    [other_old] = await store(services, other, dataclasses.replace(item(3, "503", days_old=40), channel_external_id="999"))
    for item_id in (old, recent, other_old):
        await add_traces(services, item_id)
    async with services.sessions.begin() as session:
        session.add(Delivery(platform="facebook", body=b'{"old": 1}', received_at=NOW - timedelta(days=31),
                             processed_at=NOW - timedelta(days=31)))
        session.add(Delivery(platform="facebook", body=b'{"unread": 1}', received_at=NOW - timedelta(days=31)))
    kpi_before = (await snapshot(services, old))["kpi"]
    assert kpi_before >= 1  # ingest lag, measured at storage

    counts = await apply_retention(services, now=NOW)

    assert counts == {"items": 1, "deliveries": 1}
    erased = await snapshot(services, old)
    assert_erased(erased)
    assert erased["explanations"] == [[]], "the label stays, its cue words go"
    assert erased["kpi"] == kpi_before, "anonymous KPI events are kept"
    assert erased["emails"] == ["[erased]"] and erased["replies"] == ["[erased]"] and erased["notes"] == ["[erased]"]
    assert (await snapshot(services, recent))["text"] == "mon pain était rassis"
    assert (await snapshot(services, other_old))["text"] == "mon pain était rassis", "no retention on that channel"
    async with services.sessions() as session:
        assert (await session.scalars(select(Delivery.body))).all() == [b'{"unread": 1}'], "unread deliveries stay"

    # the global default covers channels without their own period
    with_default = dataclasses.replace(services, settings=dataclasses.replace(services.settings, retention_days=35))
    assert (await apply_retention(with_default, now=NOW))["items"] == 1
    assert_erased(await snapshot(services, other_old))
    assert (await snapshot(services, recent))["text"] == "mon pain était rassis"


async def test_a_platform_delete_erases_the_text_and_a_later_edit_brings_nothing_back(services: Services) -> None:
    channel = await add_channel(services, PAGE)
    [item_id] = await store(services, channel, item(1, "501", days_old=0))
    await add_traces(services, item_id)
    delete = {"object": "page", "entry": [{"id": PAGE, "time": 1_717_000_000, "changes": [{"field": "feed", "value": {
        "item": "comment", "verb": "remove", "comment_id": f"{PAGE}_1_1", "post_id": f"{PAGE}_1",
        "from": {"id": "501"}, "created_time": 1_717_000_000}}]}]}
    async with services.sessions.begin() as session:
        row = await session.get(Channel, channel.id)
        await store_items(session, row, parse_delivery(delete), source="webhook")
    snap = await snapshot(services, item_id)
    assert snap["status"] == "removed"
    assert_erased(snap)
    await store(services, channel, item(1, "501", days_old=0, text="mon pain était rassis (modifié)", verb=ChangeVerb.EDIT))
    assert (await snapshot(services, item_id))["text"] == ""


@pytest.fixture
def relais_env(tmp_path: Path, database_url: str, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The `relais` command in this process (its output through capsys), on this test's database."""
    for key, value in {"RELAIS_DATABASE_URL": database_url, "RELAIS_DATA_DIR": str(tmp_path / "data"),
                       "RELAIS_MODELS_DIR": str(models_dir)}.items():
        monkeypatch.setenv(key, value)
    if not db.is_sqlite(database_url):
        db.upgrade(database_url)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield make_settings(tmp_path, database_url, models_dir)
    root.handlers[:] = handlers
    root.setLevel(level)


def test_privacy_export_then_erase_an_author(relais_env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    async def setup() -> dict[str, int]:
        async with open_services(relais_env, load_model=False) as services:
            channel = await add_channel(services, PAGE)
            mine = await store(services, channel, item(1, "501", 3), item(2, "501", 1, text="et la baguette aussi"))
            [theirs] = await store(services, channel, item(3, "777", 1, text="très bon accueil"))
            await add_traces(services, mine[0])
            async with services.sessions.begin() as session:  # 501 reacted to someone else's comment
                row = await session.get(Item, theirs)
                row.raw = {**row.raw, "reactors": {"501": "angry", "888": "like"}, "reactions": {"angry": 1, "like": 1}}
                session.add(Delivery(platform="facebook", body=json.dumps({"entry": [{"changes": [{"value": {
                    "from": {"id": "501", "name": "Client 501"}, "message": "mon pain était rassis"}}]}]}).encode(),
                    received_at=NOW, processed_at=NOW))
            return {"mine": mine[0], "second": mine[1], "theirs": theirs}

    ids = asyncio.run(setup())
    assert main(["privacy", "export", "--author", "501"]) == 0
    export = json.loads(capsys.readouterr().out)
    assert [i["text"] for i in export["items"]] == ["mon pain était rassis", "et la baguette aussi"]
    assert export["items"][0]["author_name"] == "Client 501"
    assert export["emails"][0]["body_text"] == "mon pain était rassis"
    assert export["notes"][0]["text"] == "client fidèle, appelle souvent"
    assert export["reactions"] == [{"item_id": ids["theirs"], "platform": "facebook",
                                    "external_id": f"{PAGE}_1_3", "reaction": "angry"}]
    assert len(export["webhook_deliveries"]) == 1 and export["kpi_events"]

    assert main(["privacy", "erase", "--author", "501", "--platform", "facebook"]) == 0
    assert "erased: 2 item(s)" in capsys.readouterr().out

    async def after() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with open_services(relais_env, load_model=False) as services:
            async with services.sessions() as session:
                theirs = await session.get(Item, ids["theirs"])
                assert theirs is not None and await session.scalar(select(func.count()).select_from(Delivery)) == 0
                return await snapshot(services, ids["mine"]), {"raw": theirs.raw, "text": theirs.text}, \
                    await snapshot(services, ids["second"])

    mine, theirs, second = asyncio.run(after())
    assert_erased(mine)
    assert mine["kpi"] >= 1
    assert second["erased"] and second["text"] == ""
    assert theirs["text"] == "très bon accueil"
    assert theirs["raw"]["reactors"] == {"888": "like"} and theirs["raw"]["reactions"] == {"like": 1}
    assert main(["privacy", "export", "--author", "501"]) == 0
    assert "rassis" not in capsys.readouterr().out


def test_channels_retention_sets_and_clears_a_channel_period(relais_env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    async def setup() -> None:
        async with open_services(relais_env, load_model=False) as services:
            await add_channel(services, PAGE)

    async def period() -> int | None:
        async with open_services(relais_env, load_model=False) as services, services.sessions() as session:
            return await session.scalar(select(Channel.retention_days))

    asyncio.run(setup())
    assert main(["channels", "retention", f"Page {PAGE}", "--days", "30"]) == 0
    assert asyncio.run(period()) == 30
    assert main(["channels", "retention", PAGE, "--default"]) == 0
    assert asyncio.run(period()) is None
    assert main(["channels", "retention", "no such page", "--days", "3"]) == 1
    assert "no channel named 'no such page'" in capsys.readouterr().err




async def test_the_daily_retention_job_runs_once_a_day_through_the_worker(services: Services) -> None:
    from bot.pipeline.flow import handlers
    from bot.pipeline.worker import Worker
    from bot.privacy.retention import schedule_retention
    from bot.store.models import Job

    channel = await add_channel(services, PAGE, retention_days=7)
    [old] = await store(services, channel, item(1, "501", days_old=8))
    async with services.sessions.begin() as session:
        await session.execute(Job.__table__.delete())  # the classify job: not this test's business
        for _ in range(3):  # the scheduler ticks every second: one job per day all the same
            await schedule_retention(session, NOW)
    async with services.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Job).where(Job.kind == "retention")) == 1
    assert await Worker(services.sessions, handlers(services), worker_id="t").run_once() == 1
    assert_erased(await snapshot(services, old))
