"""Scoring a model on examples, and cross-validation that retrains inside each fold."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from classifiers.domain import Example
from classifiers.metrics import scores
from classifiers.model import Model, train

Trainer = Callable[[Sequence[Example]], Model]


def evaluate(
    model_or_trainer: Model | Trainer,
    examples: Sequence[Example],
    *,
    holdout: float = 0.2,
    seed: int = 0,
    binary: str | None = None,
) -> dict[str, Any]:
    """Scores of a fitted `Model` on `examples`; given a trainer instead (examples -> Model),
    train it on a stratified (1 - holdout) split of `examples` and score the rest.
    ``binary="complaint"``: truth and predictions both collapsed to complaint / not_complaint."""
    examples = list(examples)
    if isinstance(model_or_trainer, Model):
        model, test = model_or_trainer, examples
    else:
        labels = [ex.label for ex in examples]
        fit_part, test = train_test_split(
            examples, test_size=holdout, random_state=seed, stratify=labels
        )
        model = model_or_trainer(fit_part)
    truth = [ex.label for ex in test]
    proba = model.predict_proba([ex.text for ex in test], [ex.context for ex in test])
    predicted = [model.classes[k] for k in proba.argmax(axis=1)]
    if binary:
        negative = f"not_{binary}"
        truth = [t if t == binary else negative for t in truth]
        predicted = [p if p == binary else negative for p in predicted]
        return scores(truth, predicted, [binary, negative])
    return scores(truth, predicted, sorted(set(truth) | set(model.classes)))


def collapse(examples: Sequence[Example], positive: str) -> list[Example]:
    """Binary view: `positive` stays, every other label becomes ``not_<positive>``."""
    negative = f"not_{positive}"
    return [ex if ex.label == positive else replace(ex, label=negative) for ex in examples]


def fold_scores(
    examples: Sequence[Example],
    folds: int = 10,
    binary: str | None = None,
    *,
    seed: int = 0,
    trainer: Trainer | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[float]:
    """Macro-F1 of each stratified fold, with a model trained on the other folds only."""
    data = collapse(examples, binary) if binary else list(examples)
    labels = np.array([ex.label for ex in data])
    fit: Trainer = trainer or (lambda part: train(part, seed=seed, holdout=0.0))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    results: list[float] = []
    for fold, (train_idx, test_idx) in enumerate(splitter.split(np.zeros(len(data)), labels), 1):
        model = fit([data[i] for i in train_idx])
        results.append(evaluate(model, [data[i] for i in test_idx])["macro_f1"])
        if progress:
            progress(f"fold {fold}/{folds}: macro-F1 {results[-1]:.4f}")
    return results


def cross_validate(
    examples: Sequence[Example], folds: int = 10, binary: str | None = None, *, seed: int = 0
) -> float:
    """Mean macro-F1 over `folds` stratified folds; ``binary="complaint"`` scores complaint vs
    not (labels collapsed before training)."""
    return float(np.mean(fold_scores(examples, folds, binary, seed=seed)))
