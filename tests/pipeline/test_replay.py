"""``relais rules replay`` through the real command, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot import PROJECT_ROOT
from bot.store import db
from bot.store.models import Assignment, Classification, Expert, Item
from tests.cli.relais_runner import make_relais

SHIPPED = (PROJECT_ROOT / "routing_rules.yaml").read_text(encoding="utf-8")
CHLOE, HUGO, SARAH = (
    "chloe.qualite@boulangerie-doree.example",
    "hugo.produits@boulangerie-doree.example",
    "sarah.marketing@boulangerie-doree.example",
)
# The candidate: product ideas now go to Sarah within 2 days; the rest is unchanged.
CANDIDATE = SHIPPED.replace(
    "    assign: hugo.produits@boulangerie-doree.example\n    reply_mode: public\n    sla: 1d\n",
    "    assign: sarah.marketing@boulangerie-doree.example\n    reply_mode: public\n    sla: 2d\n",
)
DAY1 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
DAY2 = datetime(2026, 11, 21, 14, 0, tzinfo=UTC)


async def _store(url: str) -> None:
    """Three routed items as the shipped file routed them, one imported without assignee."""
    await asyncio.to_thread(db.upgrade, url)
    engine = db.create_engine(url)
    sessions = db.sessionmaker(engine)
    async with sessions.begin() as session:
        experts = {e: Expert(email=e, name=e.split(".")[0]) for e in (CHLOE, HUGO, SARAH)}
        session.add_all(experts.values())
        await session.flush()
        stories = [
            (DAY1, "complaint", 0.9, "Croissants rassis 😡", CHLOE, "Plaintes qualité", 2),
            (DAY1, "product_feedback", 0.8, "Une version sans gluten ?", HUGO, "Idées produit", 24),
            (DAY2, "product_feedback", 0.7, "Des macarons à la pistache svp", HUGO, "Idées produit", 24),
            (DAY2, "other", 1.0, "Bonne journée !", None, None, None),
        ]
        for n, (when, label, confidence, text, expert, rule, sla_h) in enumerate(stories):
            item = Item(
                platform="facebook", external_id=f"1_{n}", kind="comment", text=text, language="fr",
                created_time=when, received_at=when, status="notified" if expert else "imported",
            )
            session.add(item)
            await session.flush()
            session.add(Classification(item_id=item.id, label=label, confidence=confidence, model_version="m"))
            if expert:
                session.add(
                    Assignment(
                        item_id=item.id, expert_id=experts[expert].id, rule_name=rule, rules_version="old",
                        reply_mode="public", sla_due=when + timedelta(hours=sla_h), assigned_at=when + timedelta(seconds=3),
                    )
                )
    await engine.dispose()


def test_replay_reports_moves_load_and_sla_changes(tmp_path: Path, database_url: str, models_dir: Path) -> None:
    relais = make_relais(tmp_path / "cli", database_url, models_dir)
    asyncio.run(_store(database_url))
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(CANDIDATE, encoding="utf-8")

    report = json.loads(relais("rules", "replay", "--rules", str(candidate), "--format", "json").stdout)
    assert report["items"] == 4
    moved = {(m["before"], m["after"], m["before_rule"], m["after_rule"]) for m in report["moved"]}
    assert moved == {
        (HUGO, SARAH, "Idées produit", "Idées produit"),
        ("unrouted", "triage", None, "Tout le reste"),
    }
    assert len(report["moved"]) == 3
    assert sorted((s["sla_before_s"], s["sla_after_s"]) for s in report["sla_changed"]) == [(86400, 172800)] * 2
    load = {(row["day"], row["who"]): (row["before"], row["after"]) for row in report["load"]}
    assert load[("2026-11-20", HUGO)] == (1, 0)
    assert load[("2026-11-20", SARAH)] == (0, 1)
    assert load[("2026-11-20", CHLOE)] == (1, 1)  # the complaint stays with Chloé
    assert load[("2026-11-21", SARAH)] == (0, 1)
    assert load[("2026-11-21", "triage")] == (0, 1)

    since = json.loads(relais("rules", "replay", "--rules", str(candidate), "--since", "2026-11-21", "--format", "json").stdout)
    assert since["items"] == 2 and {m["after"] for m in since["moved"]} == {SARAH, "triage"}

    table = relais("rules", "replay", "--rules", str(candidate)).stdout
    assert "4 items replayed, 3 would move" in table
    assert f"{HUGO} (Idées produit) -> {SARAH} (Idées produit)" in table
    assert "1d -> 2d  (Idées produit -> Idées produit)" in table


def test_replay_of_the_same_file_moves_nothing_but_unrouted_items(tmp_path: Path, database_url: str, models_dir: Path) -> None:
    relais = make_relais(tmp_path / "cli", database_url, models_dir)
    asyncio.run(_store(database_url))
    report = json.loads(relais("rules", "replay", "--rules", str(PROJECT_ROOT / "routing_rules.yaml"), "--format", "json").stdout)
    assert [(m["before"], m["after"]) for m in report["moved"]] == [("unrouted", "triage")]
    assert report["sla_changed"] == []


def test_replay_refuses_an_invalid_candidate_and_a_bad_date(tmp_path: Path, database_url: str, models_dir: Path) -> None:
    relais = make_relais(tmp_path / "cli", database_url, models_dir)
    broken = tmp_path / "broken.yaml"
    broken.write_text(SHIPPED.replace("category: complaint", "category: complaints"), encoding="utf-8")
    done = relais("rules", "replay", "--rules", str(broken), check=False)
    assert done.returncode == 2 and f"{broken}:" in done.stderr and "complaints" in done.stderr
    done = relais("rules", "replay", "--rules", str(PROJECT_ROOT / "routing_rules.yaml"), "--since", "yesterday", check=False)
    assert done.returncode == 2 and "--since" in done.stderr
