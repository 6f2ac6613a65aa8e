"""``python -m classifiers``: train, list, switch, evaluate and try models from a shell."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from classifiers.data_io import load_seed
from classifiers.domain import Context
from classifiers.evaluate import fold_scores
from classifiers.model import train
from classifiers.registry import current_version, list_versions, load_current, use_version


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m classifiers", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("train", help="train on the seed data, save, make current")
    cmd.add_argument("directory", type=Path)
    cmd.add_argument("--seed", type=int, default=0)
    cmd = commands.add_parser("list", help="saved versions, current one starred")
    cmd.add_argument("directory", type=Path)
    cmd = commands.add_parser("use", help="make VERSION the current model")
    cmd.add_argument("directory", type=Path)
    cmd.add_argument("version")
    cmd = commands.add_parser("cv", help="cross-validate on the seed data")
    cmd.add_argument("--folds", type=int, default=10)
    cmd.add_argument("--binary", default=None, help='e.g. "complaint": that label vs the rest')
    cmd.add_argument("--seed", type=int, default=0)
    cmd = commands.add_parser("predict", help="classify TEXT with the current model")
    cmd.add_argument("directory", type=Path)
    cmd.add_argument("text")
    cmd.add_argument("--platform", default="")
    cmd.add_argument("--kind", default="")
    cmd.add_argument("--parent-ad", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "train":
        model = train(load_seed(), seed=args.seed)
        path = model.save(args.directory)
        use_version(args.directory, model.version)
        metrics = model.metadata["metrics"] or {}
        print(f"{path} macro-F1 (held out) {metrics.get('macro_f1', float('nan')):.3f}")
    elif args.command == "list":
        current = current_version(args.directory)
        for version in list_versions(args.directory):
            print(("* " if version == current else "  ") + version)
    elif args.command == "use":
        use_version(args.directory, args.version)
    elif args.command == "cv":
        started = time.perf_counter()
        scores = fold_scores(load_seed(), args.folds, args.binary, seed=args.seed)
        mean = sum(scores) / len(scores)
        elapsed = time.perf_counter() - started
        print(json.dumps({"macro_f1_mean": mean, "folds": scores, "seconds": round(elapsed, 1)}))
    elif args.command == "predict":
        model = load_current(args.directory)
        context = Context(args.platform, args.kind, args.parent_ad)
        print(model.predict_one(args.text, context))
    return 0


if __name__ == "__main__":
    sys.exit(main())
