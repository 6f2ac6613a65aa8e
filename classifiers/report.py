"""Plain-text renderings of scores, retraining outcomes and saved models, for the command line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from classifiers.retrain import RetrainOutcome


def scores_table(report: dict[str, Any]) -> str:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    lines = [f"n {report['n']}  accuracy {report['accuracy']:.3f}  macro-F1 {report['macro_f1']:.3f}"]
    width = max([len("label"), *(len(label) for label in report["per_class"])])
    lines.append(f"{'label':<{width}}  precision  recall     f1  support")
    for label, row in report["per_class"].items():
        lines.append(
            f"{label:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}"
            f"  {row['support']:7d}"
        )
    labels: Sequence[str] = report["confusion"]["labels"]
    cell = max(6, *(len(label) for label in labels))
    lines.append("confusion (rows: true label, columns: predicted)")
    lines.append(" " * (width + 2) + " ".join(f"{label:>{cell}}" for label in labels))
    for label, row in zip(labels, report["confusion"]["matrix"], strict=True):
        lines.append(f"{label:<{width}}  " + " ".join(f"{v:>{cell}d}" for v in row))
    calibration = report.get("calibration")
    if calibration:
        lines.append(
            f"calibration on {calibration['n']} held-out rows: temperature "
            f"{calibration['temperature']}, ECE {calibration['ece_before']} -> "
            f"{calibration['ece_after']}, Brier {calibration['brier_before']} -> "
            f"{calibration['brier_after']}, review rate {calibration['review_rate']:.1%}"
        )
    return "\n".join(lines)


def outcome_json(outcome: RetrainOutcome) -> dict[str, Any]:
    meta = outcome.candidate.metadata
    return {
        "version": outcome.candidate.version,
        "replaced": outcome.replaced,
        "n_examples": meta["n_examples"],
        "n_seed": outcome.n_seed,
        "n_human": outcome.n_human,
        "n_held_out": outcome.n_held_out,
        "macro_f1": outcome.candidate_macro_f1,
        "current_version": outcome.current_version,
        "current_macro_f1": outcome.current_macro_f1,
        "comparable": outcome.comparable,
        "metrics": meta["metrics"],
        "review_thresholds": meta["review_thresholds"],
    }


def outcome_text(outcome: RetrainOutcome) -> str:
    meta = outcome.candidate.metadata
    lines = [
        (
            f"trained {outcome.candidate.version} on {meta['n_trained']} of {meta['n_examples']} "
            f"examples ({outcome.n_seed} seed rows + {outcome.n_human} human labels), "
            f"{outcome.n_held_out} held out"
        )
    ]
    if meta["metrics"]:
        lines.append(scores_table(meta["metrics"]))
    if meta["review_thresholds"]:
        pairs = ", ".join(f"{k} {v:.2f}" for k, v in sorted(meta["review_thresholds"].items()))
        lines.append(f"needs-review thresholds: {pairs}")
    new = f"{outcome.candidate_macro_f1:.4f}"
    if outcome.current_version is None:
        lines.append(f"no current model: {outcome.candidate.version} is now current")
    elif not outcome.comparable:
        lines.append(
            f"{outcome.candidate.version} is now current: {outcome.current_version} was trained "
            f"before the stable held-out split, on these very rows (its macro-F1 "
            f"{outcome.current_macro_f1:.4f} on them is not comparable)"
        )
    elif outcome.replaced:
        lines.append(
            f"{outcome.candidate.version} is now current: held-out macro-F1 {new} >= "
            f"{outcome.current_macro_f1:.4f} for {outcome.current_version} on the same rows"
        )
    else:
        lines.append(
            f"kept {outcome.current_version}: the new model does worse on the held-out rows "
            f"(macro-F1 {new} < {outcome.current_macro_f1:.4f}); nothing was saved"
        )
    return "\n".join(lines)


def versions_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [f"  {'version':<22} {'created_at':<26} {'examples':>8} {'macro-F1':>8} {'ECE':>6}"]
    for row in rows:
        f1 = "-" if row["macro_f1"] is None else f"{row['macro_f1']:.3f}"
        ece = "-" if row["ece"] is None else f"{row['ece']:.3f}"
        lines.append(
            f"{'*' if row['current'] else ' '} {row['version']:<22} {row['created_at']:<26} "
            f"{row['n_examples']:>8} {f1:>8} {ece:>6}"
        )
    return "\n".join(lines)
