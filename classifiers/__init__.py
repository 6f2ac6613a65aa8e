"""Relais classifiers: complaint / product_feedback / ad_reaction / other, French and English.

Training, evaluation and prediction only: no web framework, no database.
"""

from __future__ import annotations

from classifiers.data_io import load_seed
from classifiers.domain import LABELS, Context, Example, Prediction
from classifiers.errors import ArtifactIntegrityError, IncompatibleArtifactError, ModelLoadError
from classifiers.evaluate import cross_validate, evaluate
from classifiers.language import detect_language
from classifiers.model import Model, train
from classifiers.registry import list_versions, load_current, load_or_train, use_version

__all__ = [
    "LABELS",
    "ArtifactIntegrityError",
    "Context",
    "Example",
    "IncompatibleArtifactError",
    "Model",
    "ModelLoadError",
    "Prediction",
    "cross_validate",
    "detect_language",
    "evaluate",
    "list_versions",
    "load_current",
    "load_or_train",
    "load_seed",
    "train",
    "use_version",
]
