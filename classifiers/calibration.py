"""Calibrated confidence: temperature scaling, its measurement, and per-class review thresholds.

A linear model trained with little regularisation says 0.99 for almost everything. Dividing its
logits by one temperature ``T`` (fitted by likelihood on held-out rows the model never saw) keeps
every decision and makes the confidence mean what it says. It is measured on the held-out rows by
cross-fitting: ``T`` fitted on one half is scored on the other, and the other way round, so the
reported calibration is never measured on the rows it was fitted on.

Review thresholds: for each label, the lowest confidence down to which the held-out predictions
of that label keep a precision of at least ``target`` (counted from the most confident down).
Below it an item goes to the community manager's triage queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

TARGET_PRECISION = 0.90
THRESHOLD_FLOOR = 0.35
THRESHOLD_CEILING = 0.90
MIN_PREDICTIONS = 10  # fewer held-out predictions of a label: no threshold for it
ECE_BINS = 15


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    np.exp(scaled, out=scaled)
    scaled /= scaled.sum(axis=1, keepdims=True)
    return scaled


def fit_temperature(logits: np.ndarray, truth: np.ndarray) -> float:
    """The ``T`` in [0.05, 50] that minimises the negative log-likelihood of `truth`."""

    def nll(log_t: float) -> float:
        proba = softmax(logits, float(np.exp(log_t)))
        return float(-np.mean(np.log(np.clip(proba[np.arange(len(truth)), truth], 1e-12, 1.0))))

    found = minimize_scalar(nll, bounds=(np.log(0.05), np.log(50.0)), method="bounded")
    return float(np.exp(found.x))


def expected_calibration_error(proba: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total / len(truth))


def brier_score(proba: np.ndarray, truth: np.ndarray) -> float:
    """Multi-class Brier score: mean over rows of the squared distance to the one-hot truth."""
    onehot = np.zeros_like(proba)
    onehot[np.arange(len(truth)), truth] = 1.0
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def review_thresholds(
    proba: np.ndarray, truth: np.ndarray, classes: Sequence[str], target: float = TARGET_PRECISION
) -> dict[str, float]:
    """Per label: the confidence below which the held-out precision of that label would fall
    under `target` (clamped to [THRESHOLD_FLOOR, THRESHOLD_CEILING])."""
    predicted = proba.argmax(axis=1)
    confidence = proba.max(axis=1)
    thresholds: dict[str, float] = {}
    for k, label in enumerate(classes):
        mask = predicted == k
        if mask.sum() < MIN_PREDICTIONS:
            continue
        order = np.argsort(-confidence[mask], kind="stable")
        conf = confidence[mask][order]
        hits = (truth[mask][order] == k).astype(np.float64)
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        good = np.flatnonzero(precision >= target)
        value = float(conf[good[-1]]) if len(good) else THRESHOLD_CEILING
        thresholds[label] = round(min(max(value, THRESHOLD_FLOOR), THRESHOLD_CEILING), 4)
    return thresholds


def calibrate(
    logits: np.ndarray, truth: np.ndarray, classes: Sequence[str], *, seed: int = 0
) -> tuple[float, dict[str, float], dict[str, Any]]:
    """Fit the temperature and the review thresholds on held-out `logits`; return them with a
    report: ECE and Brier before/after (after = cross-fitted on two halves), review rate."""
    n = len(truth)
    temperature = fit_temperature(logits, truth)
    calibrated = softmax(logits, temperature)
    thresholds = review_thresholds(calibrated, truth, classes)
    halves = np.random.default_rng(seed).permutation(n)
    a, b = halves[: n // 2], halves[n // 2 :]
    crossed = np.empty_like(calibrated)
    crossed[b] = softmax(logits[b], fit_temperature(logits[a], truth[a]))
    crossed[a] = softmax(logits[a], fit_temperature(logits[b], truth[b]))
    raw = softmax(logits)
    confidence = calibrated.max(axis=1)
    predicted = calibrated.argmax(axis=1)
    limits = np.array([thresholds.get(classes[k], 0.0) for k in predicted])
    routed = confidence >= limits
    report = {
        "n": int(n),
        "temperature": round(temperature, 4),
        "ece_before": round(expected_calibration_error(raw, truth), 4),
        "ece_after": round(expected_calibration_error(crossed, truth), 4),
        "brier_before": round(brier_score(raw, truth), 4),
        "brier_after": round(brier_score(crossed, truth), 4),
        "mean_confidence_before": round(float(raw.max(axis=1).mean()), 4),
        "mean_confidence_after": round(float(confidence.mean()), 4),
        "accuracy": round(float((predicted == truth).mean()), 4),
        "target_precision": TARGET_PRECISION,
        "review_rate": round(float(1.0 - routed.mean()), 4),
        "routed_accuracy": round(float((predicted == truth)[routed].mean()), 4)
        if routed.any()
        else None,
    }
    return temperature, thresholds, report
