"""Retraining from the seed plus people's corrections, kept only if it does not do worse.

The candidate and the current model are compared on the same rows: the held-out split of the
new training data (``model.holdout_mask``, stable by text), which no model ever trains on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from classifiers.data_io import load_seed
from classifiers.domain import Example
from classifiers.errors import ModelLoadError
from classifiers.evaluate import evaluate
from classifiers.features import normalise
from classifiers.model import Model, holdout_mask, train
from classifiers.registry import load_current, use_version

HOLDOUT = 0.2


@dataclass(frozen=True, slots=True)
class RetrainOutcome:
    candidate: Model
    candidate_macro_f1: float
    current_version: str | None  # None: there was no usable current model
    current_macro_f1: float | None
    replaced: bool
    n_seed: int
    n_human: int
    n_held_out: int
    comparable: bool = True  # False: the current model predates the stable held-out split


def merge_examples(seed: Sequence[Example], human: Sequence[Example]) -> list[Example]:
    """The seed plus the human labels; a human label replaces a seed row (or an earlier human
    label) with the same normalised text."""
    merged: dict[str, Example] = {}
    for example in [*seed, *human]:
        merged[normalise(example.text)] = example
    return list(merged.values())


def retrain(
    directory: Path,
    human: Sequence[Example],
    *,
    seed_examples: Sequence[Example] | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> RetrainOutcome:
    """Train on the seed + `human`; make it current in `directory` only if its held-out
    macro-F1 is at least the current model's on the same rows (or there is no current model)."""
    say = progress or (lambda message: None)
    seed_rows = list(load_seed() if seed_examples is None else seed_examples)
    examples = merge_examples(seed_rows, human)
    say(f"{len(examples)} examples: {len(seed_rows)} seed rows, {len(human)} human labels")
    candidate = train(examples, seed=seed, holdout=HOLDOUT, progress=say)
    held = [ex for ex, out in zip(examples, holdout_mask(examples, HOLDOUT), strict=True) if out]
    metrics = candidate.metadata["metrics"] or {}
    candidate_f1 = float(metrics.get("macro_f1", 0.0))
    current: Model | None
    try:
        current = load_current(directory)
    except (FileNotFoundError, ModelLoadError) as exc:
        say(f"no usable current model ({exc})")
        current = None
    current_f1 = None
    if current is not None and held:
        say(f"scoring the current model {current.version} on the same {len(held)} rows")
        current_f1 = float(evaluate(current, held)["macro_f1"])
    # A model saved before the stable split trained on every row, held-out ones included:
    # scoring it on them would flatter it, so it is replaced whatever its score.
    comparable = current is None or "n_held_out" in current.metadata
    replaced = current_f1 is None or not comparable or candidate_f1 >= current_f1
    if replaced:
        candidate.save(directory)
        use_version(directory, candidate.version)
    return RetrainOutcome(
        candidate=candidate,
        candidate_macro_f1=candidate_f1,
        current_version=None if current is None else current.version,
        current_macro_f1=current_f1,
        replaced=replaced,
        n_seed=len(seed_rows),
        n_human=len(human),
        n_held_out=len(held),
        comparable=comparable,
    )
