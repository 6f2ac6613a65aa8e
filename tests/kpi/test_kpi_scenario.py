"""`relais import` a hand-computed week, then `relais kpi`: every figure checked by hand.

The calendar is Europe/Paris, Monday to Friday 09:00-18:00. The week of
2026-10-19 ends with the change from summer to winter time (Sunday 25 October,
03:00 CEST -> 02:00 CET). Times below are UTC; "local" is Paris.

  A  complaint  Fri 23 15:00 (17:00 local); private reply 15:30; public reply Mon 26 08:30 (09:30 CET)
  B  complaint  Sat 24 20:00 (22:00 CEST); public reply Sun 25 10:00 (11:00 CET): 14 h across the change
  C  feedback   Mon 19 07:00 (09:00 local); public reply 07:10
  D  complaint  Tue 20 10:00; never answered
  E  complaint  Wed 21 12:00; removed by its author, never answered
  F  other      Thu 22 16:00 (18:00 local); private reply Fri 23 07:30 (09:30 local); resolved 08:00
  H  before the period; the brand post: not counted
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.cli import main
from bot.services import open_services
from bot.settings import load_settings
from bot.store import db
from bot.store.models import Assignment, Classification, Item

SCENARIO = Path(__file__).with_name("scenario.jsonl")
KPI_FILE = """
calendar:
  timezone: Europe/Paris
  hours: {mon: ["09:00-18:00"], tue: ["09:00-18:00"], wed: ["09:00-18:00"], thu: ["09:00-18:00"], fri: ["09:00-18:00"]}
"""
# SLA targets set after the import (an import sets sla_due = created_time): A and C met; B, D, F breached
SLA_HOURS = {"A": 2, "B": 2, "C": 24, "D": 2, "F": 8}


@pytest.fixture
def env(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    kpi_file = tmp_path / "kpi.yaml"
    kpi_file.write_text(KPI_FILE, encoding="utf-8")
    values = {
        "RELAIS_DATA_DIR": str(tmp_path / "data"),
        "RELAIS_DATABASE_URL": database_url,
        "RELAIS_KPI_FILE": str(kpi_file),
        "RELAIS_SECRET_KEY": "test-secret-key-0123456789",
        "RELAIS_TIMEZONE": "Europe/Paris",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    if not db.is_sqlite(database_url):
        db.upgrade(database_url)
    return values


async def _set_sla() -> None:
    settings = load_settings()
    async with open_services(settings, load_model=False) as services, services.sessions.begin() as session:
        rows = (await session.execute(select(Assignment, Item).join(Item, Item.id == Assignment.item_id))).all()
        for assignment, item in rows:
            letter = item.text[0]
            if letter in SLA_HOURS:
                assignment.sla_due = item.created_time + timedelta(hours=SLA_HOURS[letter])
        # the model labelled A and B; a person corrected B (other -> complaint) and confirmed A
        items = {i.text[0]: i for i in (await session.scalars(select(Item))).all()}
        for letter, model_label in (("A", "complaint"), ("B", "other")):
            session.add(Classification(item_id=items[letter].id, label=model_label, confidence=0.9,
                                       model_version="m1", source="model"))
            await session.flush()
            session.add(Classification(item_id=items[letter].id, label="complaint", confidence=1.0,
                                       model_version="human", source="human", created_by="camille"))


def _kpi(capsys: pytest.CaptureFixture[str], *extra: str) -> object:
    capsys.readouterr()
    assert main(["kpi", "--from", "2026-10-19", "--to", "2026-10-26", "--format", "json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_hand_computed_week(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    assert main(["import", str(SCENARIO)]) == 0
    asyncio.run(_set_sla())
    k = _kpi(capsys)
    assert isinstance(k, dict)
    assert k["received"] == 6  # A B C D E F
    assert k["removed_by_author"] == 1
    assert k["answered"] == 4  # A B C F
    assert k["response_rate"] == 0.8  # 4 of the 5 not removed
    assert k["public_share"] == 0.75  # A B C
    assert k["private_share"] == 0.5  # A F
    # first reply, public or private: C 600, A 1800, B 50400 (14 h across the change), F 55800
    assert k["first_response_s"] == {"count": 4, "median": 26100.0, "p90": 54180.0}
    # in working time: B 0 (weekend), C 600, A 1800 (17:00-17:30), F 1800 (Fri 09:00-09:30)
    assert k["first_response_business_s"] == {"count": 4, "median": 1200.0, "p90": 1800.0}
    # first public: C 600, B 50400, A 235800 (Fri 17:00 -> Mon 09:30 CET)
    assert k["public_ack_s"] == {"count": 3, "median": 50400.0, "p90": 198720.0}
    # A: Fri 17:00-18:00 + Mon 09:00-09:30 = 5400; the weekend and the extra hour count nothing
    assert k["public_ack_business_s"] == {"count": 3, "median": 600.0, "p90": 4440.0}
    assert k["private_resolution_s"] == {"count": 2, "median": 28800.0, "p90": 50400.0}
    assert k["private_resolution_business_s"] == {"count": 2, "median": 1800.0, "p90": 1800.0}
    assert k["resolution_s"] == {"count": 1, "median": 57600.0, "p90": 57600.0}
    assert k["resolution_business_s"] == {"count": 1, "median": 3600.0, "p90": 3600.0}
    assert k["sla_met"] == 2 and k["sla_breached"] == 3 and k["sla_compliance"] == 0.4
    assert k["backlog_open"] == 1 and k["backlog_overdue"] == 1  # D
    assert k["reclassified"] == 1 and k["reclassification_rate"] == 0.5  # B corrected, A confirmed
    assert k["volumes"]["category"] == {"complaint": 4, "product_feedback": 1, "other": 1}
    assert k["volumes"]["platform"] == {"facebook": 4, "x": 1, "instagram": 1}

    by_expert = {row["key"]: row for row in _kpi(capsys, "--by", "expert")}  # type: ignore[union-attr]
    chloe = by_expert["chloe.qualite@boulangerie-doree.example"]
    assert (chloe["received"], chloe["answered"], chloe["backlog_open"]) == (3, 2, 1)  # A B D
    assert chloe["first_response_s"] == {"count": 2, "median": 26100.0, "p90": 45540.0}
    assert by_expert["none"]["received"] == 1  # E: nobody assigned

    # importing again and asking again changes nothing (events and business seconds are written once)
    assert main(["import", str(SCENARIO)]) == 0
    assert _kpi(capsys)["first_response_business_s"] == k["first_response_business_s"]  # type: ignore[index]

    capsys.readouterr()
    assert main(["kpi", "--from", "2026-10-19", "--to", "2026-10-26", "--format", "csv", "--by", "platform"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("group,key,received,")
    assert [line.split(",")[1] for line in lines[1:]] == ["facebook", "instagram", "x"]
