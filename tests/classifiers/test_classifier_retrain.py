from __future__ import annotations

import json
from pathlib import Path

from classifiers import Context, Example, Model, load_current
from classifiers.report import outcome_text
from classifiers.retrain import merge_examples, retrain


def test_merge_lets_a_human_label_replace_a_seed_row() -> None:
    seed = [Example("Colis perdu", "complaint"), Example("Bonjour", "other")]
    human = [Example("colis   PERDU", "other", "", Context("x", "mention")), Example("Nouveau", "other")]
    merged = merge_examples(seed, human)
    assert merged == [human[0], seed[1], human[1]]


def test_retrain_without_a_current_model_saves_and_uses_it(mini_examples: list[Example], tmp_path: Path) -> None:
    outcome = retrain(tmp_path, [], seed_examples=mini_examples)
    assert outcome.replaced and outcome.current_version is None
    assert load_current(tmp_path).version == outcome.candidate.version
    assert "is now current" in outcome_text(outcome)


def test_a_model_from_before_the_stable_split_is_not_compared(
    mini_examples: list[Example], mini_model: Model, tmp_path: Path
) -> None:
    # A model trained on every row (held-out ones included), with the metadata of that time.
    older = mini_model.save(tmp_path).with_suffix(".json")
    meta = json.loads(older.read_text())
    meta.pop("n_held_out")
    older.write_text(json.dumps(meta))
    (tmp_path / "current").write_text(mini_model.version + "\n")
    outcome = retrain(tmp_path, [Example("Le pain était brûlé, remboursez-moi", "complaint")], seed_examples=mini_examples)
    assert outcome.replaced and not outcome.comparable
    assert outcome.current_version == mini_model.version
    assert "before the stable held-out split" in outcome_text(outcome)
    assert load_current(tmp_path).version == outcome.candidate.version != mini_model.version
