"""A directory of saved models with a ``current`` pointer file naming the one to serve."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from classifiers.data_io import load_seed
from classifiers.domain import Example
from classifiers.errors import ModelLoadError
from classifiers.model import Model, train, write_atomic

logger = logging.getLogger(__name__)
CURRENT = "current"
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check_version(version: str) -> str:
    if not _VERSION.match(version):
        raise ValueError(f"invalid model version {version!r}")
    return version


def list_versions(directory: Path) -> list[str]:
    """Versions that have both files, oldest first (by created_at, then name)."""
    found: list[tuple[str, str]] = []
    for meta_path in Path(directory).glob("*.json"):
        if not meta_path.with_suffix(".joblib").is_file():
            continue
        try:
            created = str(json.loads(meta_path.read_text(encoding="utf-8")).get("created_at", ""))
        except ValueError:
            continue
        found.append((created, meta_path.stem))
    return [version for _, version in sorted(found)]


def describe_versions(directory: Path) -> list[dict[str, Any]]:
    """One row per saved version, oldest first, from its metadata file (the artifact is not
    loaded): version, created_at, n_examples, held-out macro_f1 and ECE, current."""
    current = current_version(directory)
    rows: list[dict[str, Any]] = []
    for version in list_versions(directory):
        meta = json.loads((Path(directory) / f"{version}.json").read_text(encoding="utf-8"))
        metrics = meta.get("metrics") or {}
        calibration = metrics.get("calibration") or {}
        rows.append(
            {
                "version": version,
                "created_at": str(meta.get("created_at", "")),
                "n_examples": meta.get("n_examples"),
                "macro_f1": metrics.get("macro_f1"),
                "accuracy": metrics.get("accuracy"),
                "ece": calibration.get("ece_after"),
                "recipe": meta.get("recipe"),
                "current": version == current,
            }
        )
    return rows


def current_version(directory: Path) -> str | None:
    pointer = Path(directory) / CURRENT
    if not pointer.is_file():
        return None
    return _check_version(pointer.read_text(encoding="utf-8").strip())


def use_version(directory: Path, version: str) -> None:
    """Point ``current`` at `version` after checking that it loads (integrity and versions)."""
    directory = Path(directory)
    Model.load(directory / f"{_check_version(version)}.joblib")
    write_atomic(directory / CURRENT, version + "\n")


def load_current(directory: Path) -> Model:
    """The model named by ``current``; FileNotFoundError if there is none."""
    version = current_version(directory)
    if version is None:
        raise FileNotFoundError(f"no {CURRENT} model in {directory}")
    return Model.load(Path(directory) / f"{version}.joblib")


def load_or_train(
    directory: Path, *, examples: Sequence[Example] | None = None, seed: int = 0
) -> Model:
    """Serve the current model of `directory`; if it is missing or cannot be loaded (tampered,
    other scikit-learn version or recipe), train on `examples` (default: the seed data), save it
    and make it current."""
    directory = Path(directory)
    try:
        return load_current(directory)
    except FileNotFoundError:
        logger.info("no current model in %s: training one", directory)
    except ModelLoadError as exc:
        logger.warning("current model not usable, retraining: %s", exc)
    model = train(load_seed() if examples is None else examples, seed=seed)
    model.save(directory)
    use_version(directory, model.version)
    return model
