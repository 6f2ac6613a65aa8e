"""Early warning: complaints on one post above the threshold, or far above their usual
rate for that hour, open one incident, flag the items and alert the community manager once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.kpi.crisis import crisis_check, open_incidents
from bot.services import open_services
from bot.settings import Settings
from bot.store import db
from bot.store.importer import import_records, read_file
from bot.store.models import Email, Item
from tests.conftest import make_settings

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
KPI_FILE = """
crisis:
  enabled: true
  window_minutes: 60
  min_complaints: 5
  baseline_factor: 3
  min_baseline_complaints: 3
  quiet_minutes: 120
"""


def _line(n: str, post: str, when: datetime, label: str = "complaint") -> str:
    return json.dumps({
        "platform": "facebook", "external_id": f"{post}_{n}", "kind": "comment", "created_time": when.isoformat(),
        "text": f"<b>plainte</b> {n} sur {post}", "author": {"id": f"u{n}", "name": f"Client {n}"},
        "parent_external_id": post, "thread_external_id": post, "label": label,
    })


@pytest.fixture
def crisis_settings(tmp_path: Path, database_url: str, models_dir: Path) -> Settings:
    (tmp_path / "kpi.yaml").write_text(KPI_FILE, encoding="utf-8")
    lines = [_line(f"a{i}", "P1", NOW - timedelta(minutes=5 * i)) for i in range(5)]  # 5 in the hour: over the threshold
    lines += [_line(f"b{i}", "P2", NOW - timedelta(minutes=10 * i)) for i in range(3)]  # 3, usually 4 at this hour: calm
    lines += [_line(f"h{w}{i}", "P2", NOW - timedelta(days=7 * w, minutes=10 * i)) for w in range(1, 5) for i in range(4)]
    lines += [_line(f"c{i}", "P3", NOW - timedelta(minutes=10 * i)) for i in range(3)]  # 3, usually none: 3x
    lines += [_line(f"d{i}", "P4", NOW - timedelta(minutes=5 * i), label="other") for i in range(6)]  # not complaints
    lines += [_line("e0", "P5", NOW - timedelta(minutes=90)), _line("e1", "P5", NOW - timedelta(minutes=80))]
    (tmp_path / "items.jsonl").write_text("\n".join(lines), encoding="utf-8")
    if not db.is_sqlite(database_url):
        db.upgrade(database_url)
    return make_settings(tmp_path, database_url, models_dir, kpi_file=tmp_path / "kpi.yaml")


async def test_incidents_open_once_flag_items_and_close_when_quiet(crisis_settings: Settings, tmp_path: Path) -> None:
    async with open_services(crisis_settings, load_model=False) as services:
        async with services.sessions.begin() as session:
            await import_records(session, read_file(tmp_path / "items.jsonl"))
        assert await crisis_check(services, NOW) == 2
        assert await crisis_check(services, NOW + timedelta(minutes=1)) == 0  # the same incidents: no new alert
        async with services.sessions() as session:
            incidents = await open_incidents(session)
            flagged = set((await session.scalars(select(Item.external_id).where(Item.in_crisis.is_(True)))).all())
            alerts = (await session.scalars(select(Email).where(Email.kind == "alert"))).all()
        assert sorted((i.scope, i.scope_key, i.item_count) for i in incidents) == [("post", "P1", 5), ("post", "P3", 3)]
        assert flagged == {f"P1_a{i}" for i in range(5)} | {f"P3_c{i}" for i in range(3)}
        assert len(alerts) == 2 and {a.to_address for a in alerts} == {"camille.cm@boulangerie-doree.example"}
        p1 = next(a for a in alerts if "sur P1" in a.body_text)
        assert p1.subject.startswith("[Relais] Alerte crise : 5 plaintes")
        assert "/ui/items/" in p1.body_text

        # three quiet hours later the incidents close and the flags go
        assert await crisis_check(services, NOW + timedelta(hours=3)) == 0
        async with services.sessions() as session:
            assert await open_incidents(session) == []
            assert await session.scalar(select(func.count()).select_from(Item).where(Item.in_crisis.is_(True))) == 0
