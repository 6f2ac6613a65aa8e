"""``relais train``, ``relais model list|use`` and ``relais evaluate``, run for real on SQLite."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from bot.cli import _human_labels
from classifiers import Context, Example, load_seed, train
from tests.cli.relais_runner import Relais, make_relais
from tests.conftest import make_settings

LABELS = ["complaint", "product_feedback", "ad_reaction", "other"]
AD_POST = {
    "platform": "facebook",
    "external_id": "page-1_post-9",
    "kind": "post",
    "created_time": "2026-11-19T08:00:00+01:00",
    "text": "Nouvelle galette des rois dans toutes nos boulangeries !",
    "author": {"id": "page-1", "name": "Boulangerie Dorée"},
    "is_brand_post": True,
    "is_ad": True,
}


def record(external_id: str, text: str, label: str | None, **extra: Any) -> dict[str, Any]:
    row = {
        "platform": "facebook",
        "external_id": external_id,
        "kind": "comment",
        "created_time": "2026-11-20T09:15:00+00:00",
        "text": text,
        "author": {"id": "u1", "name": "Zoé"},
        **extra,
    }
    if label:
        row["label"] = label
    return row


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def sqlite_relais(tmp_path: Path) -> Relais:
    return make_relais(tmp_path / "cm", f"sqlite:///{tmp_path / 'relais.db'}", tmp_path / "models")


@pytest.fixture
def relais(tmp_path: Path, models_dir: Path) -> Relais:
    """On SQLite, with the run's shared models folder (evaluate reads no database)."""
    return make_relais(tmp_path / "one", f"sqlite:///{tmp_path / 'relais.db'}", models_dir)


def labelled_history(tmp_path: Path) -> Path:
    rows = [
        AD_POST,
        record("c-ad-1", "Trop bonne cette pub 😂", "ad_reaction", parent_external_id="page-1_post-9"),
        record("c-2", "Mon flan était pas cuit, je veux être remboursée", "complaint"),
        record("c-3", "Vous devriez faire la galette sans amandes", "product_feedback"),
        record("c-4", "unlabelled comment", None),
        record("c-5", "Wrong label first", "other"),
    ]
    return write_jsonl(tmp_path / "history.jsonl", rows)


async def test_human_labels_are_read_with_their_context(tmp_path: Path) -> None:
    relais = sqlite_relais(tmp_path)
    relais("import", str(labelled_history(tmp_path)))
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'relais.db'}", tmp_path / "models")
    examples = sorted(await _human_labels(settings), key=lambda e: e.text)
    assert examples == [
        Example("Mon flan était pas cuit, je veux être remboursée", "complaint", "", Context("facebook", "comment", False)),
        Example("Trop bonne cette pub 😂", "ad_reaction", "", Context("facebook", "comment", True)),
        Example("Vous devriez faire la galette sans amandes", "product_feedback", "", Context("facebook", "comment", False)),
        Example("Wrong label first", "other", "", Context("facebook", "comment", False)),
    ]


def test_train_keeps_a_better_current_model_and_model_use_rolls_back(tmp_path: Path) -> None:
    relais = sqlite_relais(tmp_path)
    relais("import", str(labelled_history(tmp_path)))
    first = relais("train", "--format", "json")
    assert "train: fitting on" in first.stderr  # progress on stderr
    report = json.loads(first.stdout)
    assert report["replaced"] is True and report["current_version"] is None
    assert report["n_human"] == 4 and report["n_held_out"] >= 300
    assert report["metrics"]["macro_f1"] > 0.8
    assert set(report["review_thresholds"]) == set(LABELS)
    v1 = report["version"]

    # 400 comments labelled at random by a careless hand: the new model does worse, it is not kept
    rng = random.Random(7)
    words = ["pain", "croissant", "livraison", "commande", "bread", "order", "cake", "store", "café", "prix", "price", "shop"]
    noise = [
        record(f"n{i}", f"{rng.choice(words)} {rng.choice(words)} {rng.choice(words)} numéro {i}", rng.choice(LABELS))
        for i in range(400)
    ]
    relais("import", str(write_jsonl(tmp_path / "noise.jsonl", noise)))
    kept = relais("train")
    assert f"kept {v1}: the new model does worse on the held-out rows" in kept.stdout
    listed = json.loads(relais("model", "list", "--format", "json").stdout)
    assert [(row["version"], row["current"]) for row in listed] == [(v1, True)]
    assert listed[0]["macro_f1"] == report["macro_f1"]

    # another version, then a rollback to the first
    other = tmp_path / "models"
    train([e for e in load_seed() if "pain" not in e.text], seed=1).save(other)
    table = relais("model", "list").stdout
    assert f"* {v1}" in table and table.count("m-") == 2
    v2 = next(row["version"] for row in json.loads(relais("model", "list", "--format", "json").stdout) if row["version"] != v1)
    assert v2 in relais("model", "use", v2).stdout
    assert (other / "current").read_text().strip() == v2
    relais("model", "use", v1)
    assert (other / "current").read_text().strip() == v1
    refused = relais("model", "use", "m-19990101-deadbeef", check=False)
    assert refused.returncode == 1 and "m-19990101-deadbeef" in refused.stderr
    assert (other / "current").read_text().strip() == v1


def test_train_again_on_the_same_data_is_not_worse(tmp_path: Path) -> None:
    relais = sqlite_relais(tmp_path)
    first = json.loads(relais("train", "--format", "json").stdout)
    again = relais("train")
    assert f"{first['version']} is now current" in again.stdout
    assert f"for {first['version']} on the same rows" in again.stdout


EVAL_CSV = """text,label,language
"Colis jamais reçu, je veux un remboursement",complaint,fr
My order arrived broken and nobody answers,complaint,en
Vous devriez proposer une version sans gluten,product_feedback,fr
Please bring back the old recipe,product_feedback,en
Trop drôle cette pub 😂,ad_reaction,fr
Love this ad lol,ad_reaction,en
Vous êtes ouverts dimanche ?,other,fr
Are you open on Sunday?,other,en
"""

COMPLAINTS = [
    "@ShopHelp my parcel never arrived, third week waiting",
    "@ShopHelp charged twice and no refund yet, ridiculous",
    "@ShopHelp the app crashes every time I pay, fix it",
    "@ShopHelp still no answer from your support, awful",
    "@ShopHelp broken screen on delivery and nobody cares",
    "@ShopHelp worst service ever, cancelled my order again",
]
NOT_COMPLAINTS = [
    "@ShopHelp do you ship to Canada?",
    "@ShopHelp thanks for the quick help today!",
    "@ShopHelp what time do you open on Sunday?",
    "@ShopHelp love the new collection",
    "@ShopHelp is the blue one back in stock?",
    "@ShopHelp great job on the new website",
]


def paper_csv(path: Path) -> Path:
    """The ACL 2019 layout: no header; tweet id, text, 1/0, domain."""
    lines = []
    for i, text in enumerate(COMPLAINTS + NOT_COMPLAINTS):
        label = 1 if text in COMPLAINTS else 0
        domain = "random_tweet" if i % 6 == 5 else "retail"
        lines.append(f'{1000 + i},"{text}",{label},{domain}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_evaluate_a_labelled_csv(tmp_path: Path, relais: Relais) -> None:
    data = tmp_path / "eval.csv"
    data.write_text(EVAL_CSV, encoding="utf-8")
    report = json.loads(relais("evaluate", "--data", str(data), "--format", "json").stdout)
    assert report["n"] == 8
    assert set(report["per_class"]) == set(LABELS)
    assert {"precision", "recall", "f1", "support"} == set(report["per_class"]["complaint"])
    assert sum(map(sum, report["confusion"]["matrix"])) == 8
    assert report["accuracy"] >= 0.75 and 0 < report["macro_f1"] <= 1
    table = relais("evaluate", "--data", str(data)).stdout
    assert "macro-F1" in table and "confusion" in table and "product_feedback" in table


def test_evaluate_binary_cross_validation_on_the_paper_layout(tmp_path: Path, relais: Relais) -> None:
    data = paper_csv(tmp_path / "complaints.csv")
    done = relais("evaluate", "--cv", "3", "--binary", "complaint", "--data", str(data), "--format", "json")
    report = json.loads(done.stdout)
    assert report["n"] == 12 and report["binary"] == "complaint"
    assert len(report["folds"]) == 3 and 0 <= report["macro_f1_mean"] <= 1
    assert "fold 3/3" in done.stderr
    assert "3-fold stratified cross-validation" in relais("evaluate", "--cv", "3", "--binary", "complaint", "--data", str(data)).stdout


def test_evaluate_transfer_keeps_the_brand_directed_rows(tmp_path: Path, relais: Relais) -> None:
    data = paper_csv(tmp_path / "complaints.csv")
    report = json.loads(relais("evaluate", "--transfer", "--data", str(data), "--format", "json").stdout)
    assert report["n"] == 10  # the two random_tweet rows are left out
    assert report["confusion"]["labels"] == ["complaint", "not_complaint"]
    assert report["per_class"]["complaint"]["support"] == 5
    assert report["per_class"]["complaint"]["f1"] > 0.5
    text = relais("evaluate", "--transfer", "--data", str(data)).stdout
    assert "complaint F1" in text


def test_evaluate_refuses_a_bad_file(tmp_path: Path, relais: Relais) -> None:
    data = tmp_path / "bad.csv"
    data.write_text("body,category\nhello,other\n", encoding="utf-8")
    done = relais("evaluate", "--data", str(data), check=False)
    assert done.returncode == 2 and "missing column" in done.stderr
    assert "Traceback" not in done.stderr
