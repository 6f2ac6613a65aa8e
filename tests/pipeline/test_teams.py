"""Team strategies, availability and backups, through the real route stage (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.pipeline.route import route_item
from bot.services import Services, open_services
from bot.store import db
from bot.store.models import Assignment, Channel, Classification, Expert, Item, utcnow
from tests.conftest import make_settings

TODAY = utcnow().date()

RULES = f"""\
community_manager: cm@example.org
experts:
  - {{name: Ana, email: ana@example.org, skills: [vegan, gluten]}}
  - {{name: Ben, email: ben@example.org, skills: [vegan]}}
  - {{name: Cy, email: cy@example.org, cap: 1}}
  - {{name: Dora, email: dora@example.org, away: true, backup: eve@example.org}}
  - {{name: Eve, email: eve@example.org, out_of_office: {{from: {TODAY - timedelta(days=1)}, to: {TODAY + timedelta(days=1)}}}}}
  - {{name: Fay, email: fay@example.org, out_of_office: {{from: {TODAY + timedelta(days=2)}, to: {TODAY + timedelta(days=9)}}}}}
  - {{name: CM, email: cm@example.org}}
teams:
  - {{name: rr, members: [ana@example.org, ben@example.org, cy@example.org]}}
  - {{name: load, members: [ana@example.org, ben@example.org], strategy: least_loaded}}
  - {{name: skills, members: [ben@example.org, ana@example.org, fay@example.org], strategy: skills}}
  - {{name: closed, members: [dora@example.org, eve@example.org], backup: fay@example.org}}
  - {{name: empty, members: [dora@example.org, eve@example.org], backup: dora@example.org}}
rules:
  - {{name: round robin, when: {{keywords: [rr]}}, assign: {{team: rr}}}}
  - {{name: least loaded, when: {{keywords: [load]}}, assign: {{team: load}}}}
  - {{name: by skills, when: {{keywords: [gluten]}}, assign: {{team: skills}}, skills: [gluten, vegan]}}
  - {{name: team away, when: {{keywords: [closed]}}, assign: {{team: closed}}}}
  - {{name: nobody, when: {{keywords: [empty]}}, assign: {{team: empty}}}}
  - {{name: direct away, when: {{keywords: [dora]}}, assign: dora@example.org}}
  - {{name: direct, when: {{keywords: [cy]}}, assign: cy@example.org}}
  - name: facts from the item
    when: {{page: 4242, min_followers: 100, campaign: [4242_7], vip: "@Julie", max_age: 1h, language: fr}}
    assign: ana@example.org
  - {{name: rest, default: true}}
"""

_ids = itertools.count(1)


@pytest.fixture
async def services(tmp_path: Path, database_url: str, models_dir: Path) -> AsyncIterator[Services]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    settings = make_settings(tmp_path, database_url, models_dir, rules_file=rules)
    if not db.is_sqlite(database_url):
        db.upgrade(database_url)
    async with open_services(settings, load_model=False) as built:
        yield built


async def routed(services: Services, text: str) -> tuple[str, list[str]]:
    """Store a classified complaint, run the route stage, return (assignee or "triage", trace)."""
    async with services.sessions.begin() as session:
        item = Item(
            platform="facebook", external_id=f"1_{next(_ids)}", kind="comment", text=text,
            language="fr", created_time=utcnow() - timedelta(minutes=1), status="classified",
        )
        session.add(item)
        await session.flush()
        session.add(Classification(item_id=item.id, label="complaint", confidence=0.9, model_version="test"))
        item_id = item.id
    await route_item(services, item_id)
    async with services.sessions() as session:
        assignment = await session.scalar(select(Assignment).where(Assignment.item_id == item_id))
        assert assignment is not None
        expert = await session.get(Expert, assignment.expert_id) if assignment.expert_id else None
    return (expert.email if expert else "triage"), list(assignment.trace)


async def close_all(services: Services, email: str) -> None:
    """The expert answered everything they had."""
    async with services.sessions.begin() as session:
        expert = await session.scalar(select(Expert).where(Expert.email == email))
        for item in (await session.scalars(
            select(Item).join(Assignment, Assignment.item_id == Item.id).where(Assignment.expert_id == expert.id)  # type: ignore[union-attr]
        )).all():
            item.status = "answered"


async def test_round_robin_goes_to_the_least_recently_assigned(services: Services) -> None:
    picks = [(await routed(services, f"rr {n}"))[0] for n in range(3)]
    assert picks == ["ana@example.org", "ben@example.org", "cy@example.org"]
    # Cy has cap 1 and still holds her item: skipped; Ana was assigned longest ago
    who, trace = await routed(services, "rr again")
    assert who == "ana@example.org"
    assert trace[-2:] == [
        "team rr: cy@example.org skipped (at cap (1/1 open))",
        "team rr: ana@example.org (round robin: assigned least recently)",
    ]
    await close_all(services, "cy@example.org")
    assert (await routed(services, "rr more"))[0] == "ben@example.org"
    assert (await routed(services, "rr more again"))[0] == "cy@example.org"  # below her cap again


async def test_least_loaded_counts_open_items(services: Services) -> None:
    await routed(services, "rr a")  # Ana: 1 open
    await routed(services, "rr b")  # Ben: 1 open
    await routed(services, "rr c")  # Cy
    await routed(services, "rr d")  # Ana: 2 open
    who, trace = await routed(services, "load")
    assert who == "ben@example.org" and trace[-1] == "team load: ben@example.org (least loaded: 1 open items)"
    await close_all(services, "ana@example.org")
    assert (await routed(services, "load")) == ("ana@example.org", [*trace[:-1], "team load: ana@example.org (least loaded: 0 open items)"])


async def test_skills_prefers_the_most_shared_words(services: Services) -> None:
    who, trace = await routed(services, "sans gluten svp")
    assert who == "ana@example.org"  # vegan + gluten, against Ben's vegan alone
    assert trace[-1] == "team skills: ana@example.org (skills: 2 of 2 wanted (gluten, vegan), 0 open items)"
    assert (await routed(services, "gluten encore"))[0] == "ana@example.org"  # skills before load


async def test_nobody_available_goes_to_the_team_backup_then_triage(services: Services) -> None:
    who, trace = await routed(services, "closed")
    assert who == "fay@example.org"  # her leave starts in two days
    assert trace[-3:] == [
        "team closed: dora@example.org skipped (away)",
        f"team closed: eve@example.org skipped (out of office until {TODAY + timedelta(days=1)})",
        "team closed: nobody available, backup fay@example.org",
    ]
    who, trace = await routed(services, "empty")
    assert who == "triage"
    assert trace[-2:] == ["team empty: backup dora@example.org away", "team empty: nobody available: triage"]


async def test_a_directly_assigned_expert_who_is_away_passes_to_their_backup_or_triage(services: Services) -> None:
    who, trace = await routed(services, "dora")
    assert who == "triage"  # her backup Eve is out of office
    assert trace[-3:] == [
        "dora@example.org: away",
        f"backup eve@example.org: out of office until {TODAY + timedelta(days=1)}",
        "nobody available: triage",
    ]
    assert (await routed(services, "cy"))[0] == "cy@example.org"
    who, trace = await routed(services, "cy again")
    assert who == "triage" and trace[-2:] == ["cy@example.org: at cap (1/1 open)", "nobody available: triage"]


async def test_the_database_can_mark_someone_unavailable(services: Services) -> None:
    async with services.sessions.begin() as session:
        ana = await session.scalar(select(Expert).where(Expert.email == "ana@example.org"))
        assert ana is not None
        ana.available = False
    who, trace = await routed(services, "rr")
    assert who == "ben@example.org"
    assert "team rr: ana@example.org skipped (not available)" in trace


async def test_the_stage_gives_the_rules_the_item_s_page_author_thread_and_age(services: Services) -> None:
    async with services.sessions.begin() as session:
        channel = Channel(platform="facebook", external_id="4242", name="Boulangerie")
        session.add(channel)
        await session.flush()
        item = Item(
            channel_id=channel.id, platform="facebook", external_id="4242_7_1", kind="comment",
            parent_external_id="4242_7", thread_external_id="4242_7", author_id="77", author_handle="julie",
            author_followers=500, text="Bonjour", language="fr", created_time=utcnow() - timedelta(minutes=5),
            status="classified",
        )
        session.add(item)
        await session.flush()
        session.add(Classification(item_id=item.id, label="other", confidence=0.9, model_version="test"))
        item_id = item.id
    await route_item(services, item_id)
    async with services.sessions() as session:
        assignment = await session.scalar(select(Assignment).where(Assignment.item_id == item_id))
    assert assignment is not None and assignment.rule_name == "facts from the item", assignment.trace[-2:]
    assert assignment.trace[-1] == "facts from the item: matched"
