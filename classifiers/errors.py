"""Errors raised when a saved model cannot be used.

ValueError
└── ModelLoadError                 the artifact cannot be loaded; retrain or pick another version
    ├── ArtifactIntegrityError     missing metadata, or sha256 of the .joblib differs from it
    └── IncompatibleArtifactError  saved by another scikit-learn version or feature recipe
"""

from __future__ import annotations


class ModelLoadError(ValueError):
    pass


class ArtifactIntegrityError(ModelLoadError):
    pass


class IncompatibleArtifactError(ModelLoadError):
    pass
