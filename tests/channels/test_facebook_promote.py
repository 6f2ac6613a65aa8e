"""A community manager flags a brand post as a promotion: replies to it become ad reactions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from tests.cli.relais_runner import make_relais


def test_promote_a_stored_brand_post_and_undo_it(tmp_path: Path, models_dir: Path) -> None:
    relais = make_relais(tmp_path, f"sqlite:///{tmp_path / 'relais.db'}", models_dir)
    lines = [
        {"platform": "facebook", "external_id": "42_1", "kind": "post", "created_time": datetime(2026, 11, 2, 9, tzinfo=UTC).isoformat(),
         "text": "Nouvelle galette des rois 👑", "author": {"id": "42", "name": "Boulangerie"}, "is_brand_post": True},
        {"platform": "facebook", "external_id": "42_1_7", "kind": "comment", "created_time": datetime(2026, 11, 2, 10, tzinfo=UTC).isoformat(),
         "text": "Miam !", "author": {"id": "7", "name": "Léa"}, "parent_external_id": "42_1"},
    ]
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines), encoding="utf-8")
    relais("import", str(history))

    done = relais("channels", "promote", "facebook", "--post-id", "42_1")
    assert "is now a promotion" in done.stdout
    items = {i["external_id"]: i for i in json.loads(relais("items", "--format", "json").stdout)}
    assert items["42_1"]["is_ad"] is True

    refused = relais("channels", "promote", "facebook", "--post-id", "42_1_7", check=False)
    assert refused.returncode == 2 and "only brand posts" in refused.stderr  # a customer's comment is no ad
    unknown = relais("channels", "promote", "facebook", "--post-id", "42_999", check=False)
    assert unknown.returncode == 2 and "no stored facebook post" in unknown.stderr

    relais("channels", "promote", "facebook", "--post-id", "42_1", "--unset")
    items = {i["external_id"]: i for i in json.loads(relais("items", "--format", "json").stdout)}
    assert items["42_1"]["is_ad"] is False
