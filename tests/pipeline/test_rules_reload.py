"""Hot reload of the rules file by a running app (create_app): a valid change is taken,
an invalid one is refused and reported (the last good version stays), a later valid
one clears the error. Experts and teams are synced to the database at each reload."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp.test_utils import TestServer
from sqlalchemy import select

from bot.app import SERVICES, create_app
from bot.pipeline.rules_reload import RulesWatcher
from bot.services import Services
from bot.store import db
from bot.store.models import Expert, Team
from tests.conftest import make_settings

FIRST = """\
experts:
  - {name: Chloé, email: chloe@example.org}
rules:
  - {name: Plaintes, when: {category: complaint}, assign: chloe@example.org}
  - {name: Le reste, default: true}
"""
SECOND = """\
experts:
  - {name: Chloé Tremblay, email: chloe@example.org}
  - {name: Nadia, email: nadia@example.org, timezone: America/Toronto}
teams:
  - {name: Qualité, members: [chloe@example.org, nadia@example.org], lead: nadia@example.org}
rules:
  - {name: Plaintes, when: {category: complaint}, assign: {team: Qualité}, priority: high}
  - {name: Le reste, default: true}
"""
BROKEN = SECOND.replace("priority: high", "priority: asap")


async def _eventually(check: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    """Wait for the watcher (it looks every 0.05 s); a generous bound, not a timing assertion."""
    for _ in range(400):
        result = check()
        if await result if not isinstance(result, bool) else result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def test_running_app_reloads_a_valid_file_and_keeps_the_last_good_one(
    tmp_path: Path, database_url: str, models_dir: Path
) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(FIRST, encoding="utf-8")
    settings = make_settings(tmp_path, database_url, models_dir, rules_file=rules_file, rules_reload_s=0.05)
    if not db.is_sqlite(database_url):
        db.upgrade(database_url)
    server = TestServer(create_app(settings, run_worker=False, run_scheduler=False), host="127.0.0.1")
    await server.start_server()
    try:
        services: Services = server.app[SERVICES]
        first = services.rules.version
        assert services.rules_status.version == first and services.rules_status.error is None

        rules_file.write_text(SECOND, encoding="utf-8")
        await _eventually(lambda: services.rules.version != first, "the valid file is loaded")
        second = services.rules.version
        assert services.rules_status.version == second and services.rules_status.error is None
        assert services.rules.rules[0].team == "Qualité" and services.rules.rules[0].priority == "high"
        async with services.sessions() as session:
            experts = {e.email: e for e in (await session.scalars(select(Expert))).all()}
            team = await session.scalar(select(Team).where(Team.name == "Qualité"))
        assert experts["chloe@example.org"].name == "Chloé Tremblay"  # the file wins
        assert experts["nadia@example.org"].timezone == "America/Toronto"
        assert team is not None and team.lead_email == "nadia@example.org"
        assert experts["nadia@example.org"].team_id == team.id

        rules_file.write_text(BROKEN, encoding="utf-8")
        await _eventually(lambda: services.rules_status.error is not None, "the invalid file is reported")
        error = services.rules_status.error
        assert error is not None and error.startswith(f"{rules_file}:7:")  # file:line:column
        assert "priority must be one of" in error
        assert services.rules.version == second and services.rules_status.version == second  # last good kept

        rules_file.write_text(SECOND.replace("priority: high", "priority: urgent"), encoding="utf-8")
        await _eventually(lambda: services.rules_status.error is None, "a valid file clears the error")
        assert services.rules.version not in (first, second) and services.rules.rules[0].priority == "urgent"
    finally:
        await server.close()


async def test_a_removed_file_is_reported_and_a_rewrite_to_the_version_in_use_clears_it(
    tmp_path: Path, database_url: str, models_dir: Path
) -> None:
    from bot.services import open_services

    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(FIRST, encoding="utf-8")
    settings = make_settings(tmp_path, database_url, models_dir, rules_file=rules_file)
    if not db.is_sqlite(database_url):
        db.upgrade(database_url)
    async with open_services(settings, load_model=False) as services:
        watcher = RulesWatcher(services)
        assert await watcher.check() is False  # unchanged
        rules_file.unlink()
        assert await watcher.check() is False
        assert services.rules_status.error is not None and "cannot be read" in services.rules_status.error
        rules_file.write_text(FIRST, encoding="utf-8")
        assert await watcher.check() is False
        assert services.rules_status.error is None
