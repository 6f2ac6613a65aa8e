from __future__ import annotations

import pytest

from classifiers import Example, Model, cross_validate, evaluate, train
from classifiers.evaluate import collapse, fold_scores


def test_evaluate_model(mini_model: Model, mini_examples: list[Example]) -> None:
    report = evaluate(mini_model, mini_examples)
    assert report["n"] == len(mini_examples)
    assert report["accuracy"] > 0.9  # its own training data
    assert set(report["per_class"]) == {"complaint", "product_feedback", "ad_reaction", "other"}
    assert set(report["per_class"]["complaint"]) == {"precision", "recall", "f1", "support"}
    matrix = report["confusion"]["matrix"]
    assert sum(map(sum, matrix)) == len(mini_examples)


def test_evaluate_trainer_scores_a_held_out_part(mini_examples: list[Example]) -> None:
    report = evaluate(lambda part: train(part, holdout=0.0), mini_examples, holdout=0.25)
    assert report["n"] == len(mini_examples) // 4
    assert 0.0 <= report["macro_f1"] <= 1.0


def test_collapse() -> None:
    examples = [Example("a", "complaint"), Example("b", "other"), Example("c", "ad_reaction")]
    assert [e.label for e in collapse(examples, "complaint")] == [
        "complaint",
        "not_complaint",
        "not_complaint",
    ]


def test_cross_validate_binary(mini_examples: list[Example]) -> None:
    scores = fold_scores(mini_examples, folds=3, binary="complaint")
    assert len(scores) == 3
    mean = cross_validate(mini_examples, folds=3, binary="complaint")
    assert mean == pytest.approx(sum(scores) / 3)
    assert 0.5 < mean <= 1.0


def test_evaluate_binary_collapses_truth_and_predictions(seed_model: Model) -> None:
    examples = [
        Example("Colis jamais reçu, remboursez-moi", "complaint"),
        Example("My order arrived broken, nobody answers", "complaint"),
        Example("Are you open on Sunday?", "not_complaint"),
        Example("Love this ad lol", "not_complaint"),
    ]
    report = evaluate(seed_model, examples, binary="complaint")
    assert report["confusion"]["labels"] == ["complaint", "not_complaint"]
    assert report["per_class"]["complaint"]["support"] == 2
    assert report["accuracy"] == 1.0
