"""``relais channels add x --dms``, ``relais backfill x`` and ``relais channels promote x``,
run for real in a subprocess against the fake X API on loopback (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select, update

from bot.channels.simulated.x_api import FakeXAPI
from bot.store import db
from bot.store.models import Channel, Item
from tests.cli.relais_runner import Relais

ACCOUNT = "1000"
NOW = datetime.now(timezone.utc)
OAUTH = ["--consumer-key", "ck", "--consumer-secret", "cs", "--access-token", "at-1000",
         "--access-token-secret", "ats"]


@pytest.fixture
async def fake_url() -> AsyncIterator[tuple[FakeXAPI, str]]:
    fake = FakeXAPI()
    fake.add_account(ACCOUNT, "boulangerie", "bearer-1000", access_token="at-1000")
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


async def run(relais: Relais, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The command in a thread, so this loop keeps serving the fake X API meanwhile."""
    return await asyncio.to_thread(relais, *args, check=check)


async def query(database_url: str, statement: Any) -> Any:
    engine = db.create_engine(database_url)
    try:
        async with db.sessionmaker(engine).begin() as session:
            return (await session.execute(statement)).all()
    finally:
        await engine.dispose()


async def add_account(relais: Relais, url: str, *extra: str) -> None:
    await run(relais, "channels", "add", "x", "--user-id", ACCOUNT, "--name", "@boulangerie",
              "--bearer-token", "bearer-1000", *OAUTH, "--api-url", url, *extra)


async def test_backfill_stores_a_window_once_and_leaves_the_poll_cursor(
        relais: Relais, database_url: str, fake_url: tuple[FakeXAPI, str]) -> None:
    fake, url = fake_url
    inside = [fake.add_mention(ACCOUNT, f"2{i:03d}", f"user{i}", f"User {i}", f"question {i}",
                               created_at=NOW - timedelta(days=5, minutes=i)) for i in range(150)]
    too_old = fake.add_mention(ACCOUNT, "3001", "old", "Old", "old", created_at=NOW - timedelta(days=12))
    too_new = fake.add_mention(ACCOUNT, "3002", "new", "New", "new", created_at=NOW - timedelta(days=1))
    await add_account(relais, url)
    await query(database_url, update(Channel).values(cursor={"since_id": too_new}).returning(Channel.id))
    since, until = (date.today() - timedelta(days=8)).isoformat(), (date.today() - timedelta(days=3)).isoformat()

    first = await run(relais, "backfill", "x", "--account", ACCOUNT, "--since", since, "--until", until)
    assert "page 1: 100 fetched, 100 new" in first.stderr
    assert "page 2: 50 fetched, 50 new | 150 fetched, 150 new so far" in first.stderr
    assert "backfill done: 150 mention(s) fetched, 150 new, 2 page(s)" in first.stderr
    rows = await query(database_url, select(Item.external_id, Item.source, Item.status))
    assert sorted(r.external_id for r in rows) == sorted(inside)
    assert {(r.source, r.status) for r in rows} == {("backfill", "new")}  # queued like polled ones
    assert too_old not in {r.external_id for r in rows}

    again = await run(relais, "backfill", "x", "--account", ACCOUNT, "--since", since, "--until", until)
    assert "150 fetched, 0 new" in again.stderr
    [(count,)] = await query(database_url, select(func.count(Item.id)))
    assert count == 150
    [(cursor,)] = await query(database_url, select(Channel.cursor))
    assert cursor == {"since_id": too_new}  # the live poll resumes where it was


async def test_backfill_refuses_bad_input(relais: Relais, fake_url: tuple[FakeXAPI, str]) -> None:
    fake, url = fake_url
    await add_account(relais, url)
    unknown = await run(relais, "backfill", "x", "--account", "999", "--since", "2026-01-01", check=False)
    assert unknown.returncode == 2 and "--account 999" in unknown.stderr
    bad = await run(relais, "backfill", "x", "--account", ACCOUNT, "--since", "last week", check=False)
    assert bad.returncode == 2 and "--since" in bad.stderr
    backwards = await run(relais, "backfill", "x", "--account", ACCOUNT, "--since", "2026-02-01",
                          "--until", "2026-01-01", check=False)
    assert backwards.returncode == 2 and "--until must be after --since" in backwards.stderr
    fake.revoke(ACCOUNT)
    revoked = await run(relais, "backfill", "x", "--account", ACCOUNT, "--since", "2026-01-01", check=False)
    assert revoked.returncode == 1 and "X refused the credentials" in revoked.stderr
    assert "bearer-1000" not in revoked.stderr


async def test_dms_switch(relais: Relais, database_url: str, fake_url: tuple[FakeXAPI, str]) -> None:
    _, url = fake_url
    refused = await run(relais, "channels", "add", "x", "--user-id", ACCOUNT, "--name", "@b",
                        "--bearer-token", "bearer-1000", "--dms", check=False)
    assert refused.returncode == 2 and "OAuth 1.0a" in refused.stderr
    await add_account(relais, url)
    assert (await query(database_url, select(Channel.cursor)))[0][0] in ({}, None)
    await add_account(relais, url, "--dms")
    assert (await query(database_url, select(Channel.cursor)))[0][0] == {"dms": True}
    await add_account(relais, url)  # a token renewal without the flag keeps the switch
    assert (await query(database_url, select(Channel.cursor)))[0][0] == {"dms": True}
    await add_account(relais, url, "--no-dms")
    assert (await query(database_url, select(Channel.cursor)))[0][0] == {"dms": False}


async def test_promote_fetches_and_marks_the_brand_tweet(
        relais: Relais, database_url: str, fake_url: tuple[FakeXAPI, str]) -> None:
    fake, url = fake_url
    await add_account(relais, url)
    promo = fake.add_tweet(ACCOUNT, "-20 % sur les croissants ce week-end !")
    done = await run(relais, "channels", "promote", "x", "--tweet-id", promo)
    assert f"tweet {promo} is now a promotion" in done.stdout
    [row] = await query(database_url, select(Item.external_id, Item.is_ad, Item.is_brand_post, Item.kind))
    assert tuple(row) == (promo, True, True, "post")
    someone = fake.add_mention(ACCOUNT, "2001", "fan", "Fan", "not yours")
    refused = await run(relais, "channels", "promote", "x", "--tweet-id", someone, check=False)
    assert refused.returncode == 2 and "@fan" in refused.stderr
    undone = await run(relais, "channels", "promote", "x", "--tweet-id", promo, "--unset")
    assert "is no longer a promotion" in undone.stdout
    assert (await query(database_url, select(Item.is_ad)))[0][0] is False
