"""The real ``relais`` command in a subprocess, against the fake Graph API on loopback:
``channels add facebook|instagram``, ``channels list`` and ``backfill facebook``."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.channels.simulated.graph_api import FakeGraphAPI
from tests.cli.relais_runner import Relais, make_relais

PAGE, TOKEN, IG = "424242", "page-token-cli", "17841400000000001"


async def test_backfill_facebook_stores_a_past_window_once_and_leaves_the_cursor(
        tmp_path: Path, database_url: str, models_dir: Path, aiohttp_server) -> None:
    now = datetime.now(UTC)
    fake = FakeGraphAPI()
    fake.add_page(PAGE, "Boulangerie CLI", TOKEN)
    fake.add_instagram_account(IG, "boulangeriecli", PAGE)
    too_old = fake.user_post(PAGE, "Ann", "Il y a un mois", created_time=now - timedelta(days=30))
    posts = [fake.user_post(PAGE, f"Client {i}", f"Message {i}", created_time=now - timedelta(days=9, hours=i))
             for i in range(30)]
    comment = fake.user_comment(posts[0], "Bob", "Pareil pour moi", now - timedelta(days=8))
    server = await aiohttp_server(fake.app)
    relais: Relais = make_relais(tmp_path / "cli", database_url, models_dir)

    async def run(*args: str) -> tuple[str, str]:
        done = await asyncio.to_thread(relais, *args)  # the fake serves on this event loop
        return done.stdout, done.stderr

    api = str(server.make_url("/"))
    await run("channels", "add", "facebook", "--page-id", PAGE, "--name", "Boulangerie CLI",
              "--token", TOKEN, "--api-url", api)
    out, _ = await run("channels", "add", "instagram", "--account-id", IG, "--name", "@boulangeriecli",
                       "--token", TOKEN, "--api-url", api)
    assert "added instagram channel" in out
    since = (now - timedelta(days=12)).date().isoformat()

    _, err = await run("backfill", "facebook", "--page-id", PAGE, "--since", since)
    lines = [line for line in err.splitlines() if line.startswith("backfill Boulangerie CLI: page")]
    assert len(lines) == 2  # 25 posts a page: one progress line per page
    assert lines[-1].endswith("31 fetched, 31 new so far")
    assert "backfill done: 31 post(s) and comment(s) fetched, 31 new" in err

    _, err = await run("backfill", "facebook", "--page-id", PAGE, "--since", since)
    assert "31 fetched, 0 new" in err  # a second run stores nothing

    items = json.loads((await run("items", "--format", "json"))[0])
    stored = {item["external_id"] for item in items}
    assert stored == {*posts, comment} and too_old not in stored
    channels = {c["platform"]: c for c in json.loads((await run("channels", "list", "--format", "json"))[0])}
    assert channels["facebook"]["last_polled_at"] is None  # the live poll was not run nor moved
    assert channels["facebook"]["recovered_by_polling"] == 0  # a backfill is not a webhook gap
    assert channels["instagram"]["external_id"] == IG and channels["instagram"]["status"] == "active"
    table, _ = await run("channels", "list")
    assert "RECOVERED_BY_POLLING" in table and TOKEN not in table

    done = await asyncio.to_thread(relais, "backfill", "facebook", "--page-id", "999", "--since", since, check=False)
    assert done.returncode == 2 and "--page-id 999" in done.stderr
