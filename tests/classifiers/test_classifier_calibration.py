from __future__ import annotations

import numpy as np
import pytest

from bot.pipeline.classify import REVIEW_THRESHOLDS, needs_review
from classifiers import Context, Model, Prediction, load_seed
from classifiers.calibration import (
    THRESHOLD_CEILING,
    THRESHOLD_FLOOR,
    brier_score,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    review_thresholds,
    softmax,
)
from classifiers.model import holdout_mask

CLASSES = ("a", "b", "c")


def overconfident(n: int = 3000, factor: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z); the 'model' reports factor * z (far too sure)."""
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1.2, size=(n, 3))
    p = softmax(z)
    truth = np.array([rng.choice(3, p=row) for row in p])
    return factor * z, truth


def test_temperature_undoes_overconfidence() -> None:
    logits, truth = overconfident()
    temperature = fit_temperature(logits, truth)
    assert temperature == pytest.approx(4.0, rel=0.15)
    before = expected_calibration_error(softmax(logits), truth)
    after = expected_calibration_error(softmax(logits, temperature), truth)
    assert before > 0.15 and after < 0.04
    assert brier_score(softmax(logits, temperature), truth) < brier_score(softmax(logits), truth)


def test_calibrate_reports_before_and_after_cross_fitted() -> None:
    logits, truth = overconfident()
    temperature, thresholds, report = calibrate(logits, truth, CLASSES)
    assert report["ece_after"] < report["ece_before"]
    assert report["brier_after"] < report["brier_before"]
    assert report["mean_confidence_after"] < report["mean_confidence_before"]
    assert set(thresholds) == set(CLASSES)
    assert 0.0 <= report["review_rate"] <= 1.0
    assert report["temperature"] == pytest.approx(temperature, abs=1e-4)


def test_review_threshold_is_where_precision_falls_under_target() -> None:
    # Predicted "a" with confidence 0.95..0.50; right for the 9 most confident, then wrong.
    confidence = np.linspace(0.95, 0.50, 20)
    proba = np.column_stack([confidence, 1 - confidence, np.zeros(20)])
    truth = np.array([0] * 9 + [1] * 11)
    thresholds = review_thresholds(proba, truth, CLASSES, target=0.9)
    # cumulative precision stays >= 0.9 down to the 10th item (9 right of 10)
    assert thresholds == {"a": pytest.approx(round(confidence[9], 4))}
    never = review_thresholds(proba, np.ones(20, dtype=int), CLASSES, target=0.9)
    assert never == {"a": THRESHOLD_CEILING}


def test_seed_model_is_calibrated_with_thresholds_for_every_label(seed_model: Model) -> None:
    meta = seed_model.metadata
    report = meta["metrics"]["calibration"]
    assert report["n"] == meta["n_held_out"] >= 300
    assert report["ece_after"] < 0.05, report
    assert report["review_rate"] < 0.2, report
    thresholds = seed_model.review_thresholds
    assert thresholds is not None and set(thresholds) == set(seed_model.classes)
    assert all(THRESHOLD_FLOOR <= v <= THRESHOLD_CEILING for v in thresholds.values())
    assert seed_model.temperature == meta["temperature"] > 0


def test_probabilities_are_the_tempered_softmax_of_the_logits(seed_model: Model) -> None:
    texts = ["Colis jamais reçu", "nice", "Are you open on Sunday?"]
    contexts = [Context(), Context("facebook", "comment", True), Context("x", "mention")]
    logits = seed_model.logits(texts, contexts)
    proba = seed_model.predict_proba(texts, contexts)
    assert np.allclose(proba, softmax(logits, seed_model.temperature))
    assert np.allclose(proba.sum(axis=1), 1.0)
    confidences = [p.confidence for p in seed_model.predict(texts, contexts)]
    assert confidences == pytest.approx(proba.max(axis=1).tolist())


def test_held_out_rows_are_stable_and_never_trained_on(seed_model: Model) -> None:
    seed = load_seed()  # the split depends on the text only, not on the order
    mask = holdout_mask(seed, 0.2)
    again = holdout_mask(list(reversed(seed)), 0.2)[::-1]
    assert np.array_equal(mask, again)
    assert 0.15 < mask.mean() < 0.25
    assert seed_model.metadata["n_held_out"] == int(mask.sum())


def prediction(label: str, confidence: float) -> Prediction:
    return Prediction(label, confidence, "fr", (), "m-test")


def test_needs_review_uses_the_model_thresholds() -> None:
    thresholds = {"complaint": 0.6, "other": 0.3}
    assert needs_review(prediction("complaint", 0.55), thresholds)
    assert not needs_review(prediction("complaint", 0.65), thresholds)
    assert not needs_review(prediction("other", 0.35), thresholds)
    # a label without a threshold of its own falls back to the constants
    assert needs_review(prediction("ad_reaction", REVIEW_THRESHOLDS["ad_reaction"] - 0.01), thresholds)


def test_needs_review_of_an_older_model_uses_the_constants() -> None:
    limit = REVIEW_THRESHOLDS["complaint"]
    assert needs_review(prediction("complaint", limit - 0.01), None)
    assert not needs_review(prediction("complaint", limit + 0.01), None)
