"""The ``relais`` console entry point, run for real in a subprocess on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot import PROJECT_ROOT
from tests.cli.relais_runner import Relais, make_relais

CHLOE = "chloe.qualite@boulangerie-doree.example"
HUGO = "hugo.produits@boulangerie-doree.example"
LABELS = {"complaint", "product_feedback", "ad_reaction", "other"}

ACCENTS = "Très déçu : le pain au chocolat était brûlé et la crème pâtissière tournée 😡"
GALETTE = "Nouvelle galette des rois 🥐 dans toutes nos boulangeries !"
QUEBEC = (
    "Ben voyons donc, j'ai attendu une heure de temps pour un café frette pis des "
    "chocolatines pas cuites, c'est ben plate en tabarouette!"
)
RTL = "Le prix affiché \u202e€ 5,4 \u202cest faux, merci de vérifier"
LONG = ("Crème brûlée, croissant 🥐 et éclair au café — ") * 120
LONG = LONG[:5000]

RECORDS: list[dict[str, Any]] = [
    {
        "platform": "facebook",
        "external_id": "page-1_post-1_c-accents",
        "kind": "comment",
        "created_time": "2026-11-20T09:15:00-05:00",
        "text": ACCENTS,
        "author": {"id": "u1", "name": "Zoé Gagnon"},
        "parent_external_id": "page-1_post-1",
        "label": "complaint",
        "assignee": CHLOE,
        # listed out of order on purpose: the first response is the earliest sent_at
        "responses": [
            {"sent_at": "2026-11-20T17:00:00+01:00", "mode": "private", "text": "Écrivez-nous en privé 🙏"},
            {"sent_at": "2026-11-20T15:47:12.5+01:00", "mode": "public", "text": "Désolés, Zoé !"},
        ],
    },
    {
        "platform": "facebook",
        "external_id": "page-1_post-1",
        "kind": "post",
        "created_time": "2026-11-19T08:00:00+01:00",
        "text": GALETTE,
        "author": {"id": "page-1", "name": "Boulangerie Dorée"},
        "is_brand_post": True,
        "is_ad": True,
    },
    {
        "platform": "x",
        "external_id": "1861234567890123456",
        "kind": "mention",
        "created_time": "2026-11-21T07:30:00-05:00",
        "text": QUEBEC,
        "author": {"id": "42", "name": "Jean-Guy Tremblay"},
        "label": "other",
    },
    {
        "platform": "facebook",
        "external_id": "page-1_post-1_c-rtl",
        "kind": "comment",
        "created_time": "2026-11-21T10:00:00-05:00",
        "text": RTL,
        "author": {"id": "u3", "name": "Nadia"},
        "assignee": HUGO,
        "responses": [{"sent_at": "2026-11-21T10:00:42-05:00", "mode": "public", "text": "Merci, corrigé."}],
    },
    {
        "platform": "facebook",
        "external_id": "page-1_post-1_c-long",
        "kind": "comment",
        "created_time": "2026-11-22T12:00:00Z",
        "text": LONG,
        "author": {"id": "u4", "name": "Long Message"},
        "label": "product_feedback",
    },
]

# What `relais items --format json` must show, by external id (hand-computed).
EXPECTED: dict[str, dict[str, Any]] = {
    "page-1_post-1_c-accents": {
        "platform": "facebook", "kind": "comment", "created_time": datetime(2026, 11, 20, 14, 15, tzinfo=UTC),
        "text": ACCENTS, "label": "complaint", "confidence": 1.0, "assignee": CHLOE, "mode": "public",
        "status": "answered",
        # 09:15:00-05:00 = 14:15:00Z; first response 15:47:12.5+01:00 = 14:47:12.5Z
        "first_response_s": 32 * 60 + 12.5,
    },
    "page-1_post-1": {
        "platform": "facebook", "kind": "post", "created_time": datetime(2026, 11, 19, 7, 0, tzinfo=UTC),
        "text": GALETTE, "label": None, "confidence": None, "assignee": None, "mode": None,
        "status": "brand", "first_response_s": None,
    },
    "1861234567890123456": {
        "platform": "x", "kind": "mention", "created_time": datetime(2026, 11, 21, 12, 30, tzinfo=UTC),
        "text": QUEBEC, "label": "other", "confidence": 1.0, "assignee": None, "mode": None,
        "status": "imported", "first_response_s": None,
    },
    "page-1_post-1_c-rtl": {
        "platform": "facebook", "kind": "comment", "created_time": datetime(2026, 11, 21, 15, 0, tzinfo=UTC),
        "text": RTL, "label": None, "confidence": None, "assignee": HUGO, "mode": "public",
        "status": "answered", "first_response_s": 42.0,
    },
    "page-1_post-1_c-long": {
        "platform": "facebook", "kind": "comment", "created_time": datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
        "text": LONG, "label": "product_feedback", "confidence": 1.0, "assignee": None, "mode": None,
        "status": "imported", "first_response_s": None,
    },
}

ITEM_FIELDS = {
    "id", "platform", "external_id", "kind", "created_time", "text", "label", "confidence",
    "assignee", "mode", "status", "first_response_s",
}


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def items(relais: Relais) -> list[dict[str, Any]]:
    return json.loads(relais("items", "--format", "json").stdout)


def without_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "id"} for row in rows]


def sqlite_relais(tmp_path: Path, models_dir: Path, name: str = "solo") -> Relais:
    return make_relais(tmp_path / name, f"sqlite:///{tmp_path / name / 'relais.db'}", models_dir)


# --- help ------------------------------------------------------------------------------

SUBCOMMANDS = [
    [],
    ["demo"], ["serve"], ["worker"], ["db"], ["db", "upgrade"],
    ["channels"], ["channels", "add"], ["channels", "add", "facebook"], ["channels", "add", "x"],
    ["channels", "list"], ["items"], ["import"], ["classify"], ["rules"], ["rules", "check"],
]


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=lambda w: " ".join(w) or "relais")
def test_help_exits_zero(tmp_path: Path, models_dir: Path, words: list[str]) -> None:
    relais = sqlite_relais(tmp_path, models_dir)
    done = relais(*words, "--help")
    assert done.stdout.startswith("usage: relais")
    assert done.stderr == ""


def test_top_level_help_lists_every_command(tmp_path: Path, models_dir: Path) -> None:
    out = sqlite_relais(tmp_path, models_dir)("--help").stdout
    for command in ("demo", "serve", "worker", "db", "channels", "items", "import", "classify", "rules"):
        assert re.search(rf"^\s+{command}\s", out, re.MULTILINE), f"{command} missing from:\n{out}"


# --- import and items -------------------------------------------------------------------


def test_import_then_items_shows_every_field(tmp_path: Path, relais: Relais) -> None:
    source = write_jsonl(tmp_path / "history.jsonl", RECORDS)
    done = relais("import", str(source))
    assert "5 item(s) imported, 0 already present" in done.stderr
    rows = items(relais)
    assert len(rows) == len(RECORDS)
    by_id = {row["external_id"]: row for row in rows}
    assert set(by_id) == set(EXPECTED)
    for external_id, expected in EXPECTED.items():
        row = by_id[external_id]
        assert ITEM_FIELDS <= set(row), f"missing {ITEM_FIELDS - set(row)}"
        assert isinstance(row["id"], int)
        assert datetime.fromisoformat(row["created_time"]) == expected["created_time"]
        for field in ("platform", "kind", "text", "label", "confidence", "assignee", "mode", "status", "first_response_s"):
            assert row[field] == expected[field], f"{external_id}.{field}: {row[field]!r} != {expected[field]!r}"
    # sorted by the platform's created_time
    assert [datetime.fromisoformat(r["created_time"]) for r in rows] == sorted(
        datetime.fromisoformat(r["created_time"]) for r in rows
    )


def test_unicode_survives_import_and_listing(tmp_path: Path, relais: Relais) -> None:
    relais("import", str(write_jsonl(tmp_path / "history.jsonl", RECORDS)))
    raw = relais("items", "--format", "json").stdout
    # ensure_ascii=False: the characters themselves, not \\u escapes
    for text in ("déçu", "😡", "🥐", "tabarouette", "\u202e", "Zoé Gagnon"):
        assert text in raw
    by_id = {row["external_id"]: row for row in json.loads(raw)}
    long_text = by_id["page-1_post-1_c-long"]["text"]
    assert len(long_text) == 5000 and long_text == LONG
    assert by_id["page-1_post-1_c-rtl"]["text"] == RTL
    assert by_id["page-1_post-1_c-accents"]["author"] == {"id": "u1", "name": "Zoé Gagnon"}


def test_items_table_lists_every_item(tmp_path: Path, models_dir: Path) -> None:
    relais = sqlite_relais(tmp_path, models_dir)
    relais("import", str(write_jsonl(tmp_path / "history.jsonl", RECORDS)))
    lines = relais("items").stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "PLATFORM", "KIND"]
    assert len(lines) == 1 + len(RECORDS)
    assert sum("complaint" in line for line in lines) == 1


def test_items_limit(tmp_path: Path, models_dir: Path) -> None:
    relais = sqlite_relais(tmp_path, models_dir)
    relais("import", str(write_jsonl(tmp_path / "history.jsonl", RECORDS)))
    rows = json.loads(relais("items", "--format", "json", "--limit", "2").stdout)
    assert [r["external_id"] for r in rows] == ["page-1_post-1", "page-1_post-1_c-accents"]


def test_jsonl_export_round_trips_into_a_fresh_database(
    tmp_path: Path, relais: Relais, second_database_url: str, models_dir: Path
) -> None:
    relais("import", str(write_jsonl(tmp_path / "history.jsonl", RECORDS)))
    exported = relais("items", "--format", "jsonl").stdout
    assert len(exported.splitlines()) == len(RECORDS)
    dump = tmp_path / "export.jsonl"
    dump.write_text(exported, encoding="utf-8")

    second = make_relais(tmp_path / "two", second_database_url, models_dir)
    done = second("import", str(dump))
    assert "5 item(s) imported, 0 already present" in done.stderr
    assert without_ids(items(second)) == without_ids(items(relais))
    assert second("items", "--format", "jsonl").stdout == exported


@pytest.mark.parametrize(
    "separator",
    ["\u2028", "\u2029", "\x85"],
    ids=["line-separator", "paragraph-separator", "next-line"],
)
def test_round_trip_keeps_texts_with_unicode_line_separators(
    tmp_path: Path, models_dir: Path, separator: str
) -> None:
    """JSON lets these characters stand raw in a string (json.dumps(ensure_ascii=False) writes
    them raw), so one JSONL line may contain them: they are not line ends."""
    record = dict(RECORDS[2], text=f"Première ligne{separator}deuxième ligne")
    relais = sqlite_relais(tmp_path, models_dir, "one")
    relais("import", str(write_jsonl(tmp_path / "in.jsonl", [record])))
    dump = tmp_path / "export.jsonl"
    dump.write_text(relais("items", "--format", "jsonl").stdout, encoding="utf-8")
    second = sqlite_relais(tmp_path, models_dir, "two")
    second("import", str(dump))
    [row] = items(second)
    assert row["text"] == record["text"]


def test_importing_twice_changes_nothing(tmp_path: Path, relais: Relais) -> None:
    source = write_jsonl(tmp_path / "history.jsonl", RECORDS)
    relais("import", str(source))
    before = items(relais)
    before_export = relais("items", "--format", "jsonl").stdout
    again = relais("import", str(source))
    assert "0 item(s) imported, 5 already present" in again.stderr
    assert items(relais) == before
    assert relais("items", "--format", "jsonl").stdout == before_export


GOOD_LINE = {
    "platform": "facebook", "external_id": "ok-1", "kind": "comment",
    "created_time": "2026-11-20T09:15:00-05:00", "text": "Bon pain 🥖", "author": {"id": "u9"},
}


def bad_file(tmp_path: Path, *, with_unknown_assignee: bool) -> tuple[Path, list[int]]:
    lines = [
        json.dumps(GOOD_LINE),                                                       # 1
        "this is not JSON {",                                                        # 2
        json.dumps({k: v for k, v in GOOD_LINE.items() if k != "text"} | {"external_id": "b3"}),  # 3
        json.dumps(GOOD_LINE | {"external_id": "b4", "created_time": "2026-11-20T09:15:00"}),   # 4 naive
        json.dumps(GOOD_LINE | {"external_id": "b5", "label": "angry"}),             # 5
    ]
    bad = [2, 3, 4, 5]
    if with_unknown_assignee:
        lines.append(json.dumps(GOOD_LINE | {"external_id": "b6", "assignee": "nobody@example.com"}))  # 6
        bad.append(6)
    lines.append(json.dumps(GOOD_LINE | {"external_id": "ok-2"}))
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, bad


def test_bad_lines_are_reported_and_nothing_is_imported(tmp_path: Path, relais: Relais) -> None:
    path, bad = bad_file(tmp_path, with_unknown_assignee=False)
    done = relais("import", str(path), check=False)
    assert done.returncode != 0
    assert items(relais) == []  # nothing, not even the good lines
    for number in bad:
        assert f"{path}:{number}: " in done.stderr, done.stderr
    assert f"{path}:1: " not in done.stderr and f"{path}:{bad[-1] + 1}: " not in done.stderr
    assert "missing field(s): text" in done.stderr
    assert "UTC offset" in done.stderr
    assert "label must be one of" in done.stderr


def test_every_bad_line_including_unknown_assignee_is_named(tmp_path: Path, models_dir: Path) -> None:
    """The unknown assignee is checked only after the parse, so other bad lines hide it."""
    relais = sqlite_relais(tmp_path, models_dir)
    path, bad = bad_file(tmp_path, with_unknown_assignee=True)
    done = relais("import", str(path), check=False)
    assert done.returncode != 0
    assert items(relais) == []
    for number in bad:
        assert f"{path}:{number}: " in done.stderr, done.stderr


def test_unknown_assignee_alone_is_named_by_line(tmp_path: Path, relais: Relais) -> None:
    path = write_jsonl(
        tmp_path / "assignee.jsonl",
        [GOOD_LINE, GOOD_LINE | {"external_id": "b2", "assignee": "nobody@example.com"}],
    )
    done = relais("import", str(path), check=False)
    assert done.returncode != 0
    assert items(relais) == []
    assert "nobody@example.com" in done.stderr
    assert f"{path}:2: " in done.stderr, done.stderr


def test_import_of_a_missing_file(tmp_path: Path, models_dir: Path) -> None:
    relais = sqlite_relais(tmp_path, models_dir)
    done = relais("import", str(tmp_path / "nope.jsonl"), check=False)
    assert done.returncode != 0
    assert "no such file" in done.stderr and "Traceback" not in done.stderr


# --- classify ----------------------------------------------------------------------------


def test_classify_prints_one_json_line_per_text(tmp_path: Path, models_dir: Path) -> None:
    relais = sqlite_relais(tmp_path, models_dir)
    done = relais("classify", "Mon gâteau était rassis", "Love the new ad music!")
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    french, english = (json.loads(line) for line in lines)
    for result in (french, english):
        assert result["label"] in LABELS
        assert 0.0 <= result["confidence"] <= 1.0
    assert french["language"] == "fr"
    assert english["language"] == "en"


def test_classify_reads_standard_input(tmp_path: Path, models_dir: Path) -> None:
    relais = sqlite_relais(tmp_path, models_dir)
    done = relais("classify", stdin="Mon gâteau était rassis 😡\n\nLove the new ad music!\n")
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["language"] for r in results] == ["fr", "en"]


# --- channels ----------------------------------------------------------------------------

TOKEN = "SECRETTOKEN123"


def test_channel_add_then_list_never_shows_the_token(relais: Relais) -> None:
    added = relais("channels", "add", "facebook", "--page-id", "1", "--name", "P", "--token", TOKEN)
    listed = relais("channels", "list", "--format", "json")
    table = relais("channels", "list")
    verbose = relais("channels", "list", "-v", "--format", "json")
    for done in (added, listed, table, verbose):
        assert TOKEN not in done.stdout + done.stderr
    [channel] = json.loads(listed.stdout)
    assert channel["platform"] == "facebook"
    assert channel["external_id"] == "1"
    assert channel["name"] == "P"
    assert channel["status"] == "active"
    assert json.loads(verbose.stdout) == [channel]


def test_channel_add_twice_updates(relais: Relais) -> None:
    relais("channels", "add", "facebook", "--page-id", "1", "--name", "P", "--token", TOKEN)
    again = relais("channels", "add", "facebook", "--page-id", "1", "--name", "Pâtisserie 🥐", "--token", TOKEN + "X")
    assert "updated" in again.stdout and TOKEN not in again.stdout + again.stderr
    [channel] = json.loads(relais("channels", "list", "--format", "json").stdout)
    assert channel["name"] == "Pâtisserie 🥐"


def test_channel_add_without_token_is_a_config_error(relais: Relais) -> None:
    done = relais("channels", "add", "facebook", "--page-id", "1", "--name", "P", check=False)
    assert done.returncode == 2
    assert "RELAIS_FB_PAGE_TOKEN" in done.stderr
    assert json.loads(relais("channels", "list", "--format", "json").stdout) == []


# --- db and rules ------------------------------------------------------------------------


def test_db_upgrade_is_idempotent(relais: Relais) -> None:
    first = relais("db", "upgrade")
    second = relais("db", "upgrade")
    assert re.fullmatch(r"database at revision \w+\n", first.stdout), first.stdout
    assert "revision None" not in first.stdout
    assert second.stdout == first.stdout
    assert relais("items", "--format", "json").stdout.strip() == "[]"


def test_rules_check_on_the_shipped_file(tmp_path: Path, models_dir: Path) -> None:
    relais = sqlite_relais(tmp_path, models_dir)
    shipped = PROJECT_ROOT / "routing_rules.yaml"
    done = relais("rules", "check", str(shipped))
    assert done.stdout.startswith(f"{shipped}: OK")
    assert relais("rules", "check").stdout == done.stdout  # the configured file by default


def test_rules_check_on_a_broken_file(tmp_path: Path, models_dir: Path) -> None:
    relais = sqlite_relais(tmp_path, models_dir)
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "experts:\n  - {name: A, email: a@example.com}\n"
        "rules:\n"
        "  - name: one\n    when: {category: complaint, colour: red}\n    assign: b@example.com\n"
        "  - name: one\n    sla: soon\n",
        encoding="utf-8",
    )
    done = relais("rules", "check", str(broken), check=False)
    assert done.returncode == 2
    located = re.findall(rf"^{re.escape(str(broken))}:(\d+):(\d+): .+$", done.stderr, re.MULTILINE)
    lines = {int(line) for line, _ in located}
    assert {4, 5, 6, 7, 8} <= lines, done.stderr
    assert "Traceback" not in done.stderr
