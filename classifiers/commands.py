"""``relais evaluate``: score the current model on a labelled file, cross-validate on it, or
measure transfer to the brand-directed tweets of the ACL 2019 complaints data."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from classifiers.data_io import PAPER_DOMAINS_RANDOM, read_labelled
from classifiers.evaluate import evaluate, fold_scores
from classifiers.registry import load_or_train
from classifiers.report import scores_table


def _progress(message: str) -> None:
    print(f"evaluate: {message}", file=sys.stderr, flush=True)


def cross_validation_report(
    examples: list[Any], folds: int, binary: str | None, *, seed: int = 0
) -> dict[str, Any]:
    results = fold_scores(examples, folds, binary, seed=seed, progress=_progress)
    return {
        "protocol": f"{folds}-fold stratified cross-validation, a model trained in each fold",
        "binary": binary,
        "n": len(examples),
        "macro_f1_mean": statistics.fmean(results),
        "macro_f1_std": statistics.pstdev(results),
        "folds": results,
    }


def run_evaluate(args: argparse.Namespace, model_dir: Path) -> int:
    try:
        examples, domains = read_labelled(args.data, args.binary)
    except (OSError, ValueError) as exc:
        print(f"relais: cannot read {args.data}: {exc}", file=sys.stderr)
        return 2
    binary = args.binary
    if binary is None:  # a two-label file such as the ACL 2019 one: complaint / not_complaint
        negatives = {ex.label[4:] for ex in examples if ex.label.startswith("not_")}
        binary = next(iter(negatives)) if len(negatives) == 1 else None
    if args.cv:
        report = cross_validation_report(examples, args.cv, binary)
        text = (
            f"{report['protocol']}, {report['n']} rows"
            + (f", {binary} vs not" if binary else "")
            + f": macro-F1 {report['macro_f1_mean']:.4f} (std {report['macro_f1_std']:.4f})\n"
            + "folds: " + " ".join(f"{f:.3f}" for f in report["folds"])
        )
    else:
        if args.transfer:
            if not any(domains):
                print(f"relais: {args.data} has no domain column for --transfer", file=sys.stderr)
                return 2
            examples = [
                ex for ex, d in zip(examples, domains, strict=True) if d not in PAPER_DOMAINS_RANDOM
            ]
            binary = binary or "complaint"
        model = load_or_train(model_dir)
        report = {"model_version": model.version, **evaluate(model, examples, binary=binary)}
        if args.transfer:
            report["transfer"] = "brand-directed rows only (domain not random_tweet/random_reply)"
        text = f"model {model.version} on {args.data}" + (
            f" ({report['transfer']})" if args.transfer else ""
        )
        text += "\n" + scores_table(report)
        if binary:
            text += f"\n{binary} F1 {report['per_class'][binary]['f1']:.4f}"
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.format == "json" else text)
    return 0
