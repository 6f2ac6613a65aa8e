"""Training, prediction and the saved artifact (``<version>.joblib`` + ``<version>.json``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from classifiers.calibration import calibrate, softmax
from classifiers.data_io import examples_sha256
from classifiers.domain import Context, Example, Prediction
from classifiers.errors import ArtifactIntegrityError, IncompatibleArtifactError
from classifiers.explain import Explainer
from classifiers.fast import FastScorer
from classifiers.features import as_docs, build_features, normalise
from classifiers.metrics import scores

# Bump when features or estimator change: older artifacts are then retrained, not loaded.
RECIPE = "word12-charwb25-cues.25/logreg-newtoncg-C30-balanced/v1"
ARTIFACT_FORMAT = 1
CHUNK = 2000  # texts scored together by predict/logits: large enough to amortise, bounded memory


def build_pipeline(seed: int = 0) -> Pipeline:
    # Chosen by 10-fold CV on the seed: C in 10-100 and LinearSVC + sigmoid calibration all
    # scored within 0.01 macro-F1; newton-cg fits ~5x faster than lbfgs on these features.
    classifier = LogisticRegression(
        C=30.0, class_weight="balanced", solver="newton-cg", max_iter=1000, random_state=seed
    )
    return Pipeline([("features", build_features()), ("clf", classifier)])


class Model:
    """A fitted pipeline plus its metadata. Predictions go through `FastScorer` (the pipeline's
    vocabularies and weights applied directly; `reference_logits` is the scikit-learn path).
    Thread-safe: nothing changes after construction but memo caches (per-word char n-grams and
    language votes, explanation keys), whose entries are pure functions of their keys; the batch
    encoder's caches are filled and emptied under a lock."""

    def __init__(self, pipeline: Pipeline, metadata: dict[str, Any]) -> None:
        self._pipeline = pipeline
        self._metadata = dict(metadata)
        self._features = pipeline.named_steps["features"]
        self._classifier = pipeline.named_steps["clf"]
        self._classes: tuple[str, ...] = tuple(str(c) for c in self._classifier.classes_)
        self._explainer = Explainer(self._features, np.asarray(self._classifier.coef_))
        self._fast = FastScorer(pipeline)
        # Older artifacts have no temperature (uncalibrated) and no review thresholds.
        self._temperature = float(self._metadata.get("temperature") or 1.0)

    @property
    def version(self) -> str:
        return str(self._metadata["version"])

    @property
    def metadata(self) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(self._metadata))
        return copy

    @property
    def classes(self) -> tuple[str, ...]:
        return self._classes

    @property
    def temperature(self) -> float:
        return self._temperature

    @property
    def review_thresholds(self) -> dict[str, float] | None:
        """Per-label confidence below which an item needs review (None for an older model)."""
        found = self._metadata.get("review_thresholds")
        return {str(k): float(v) for k, v in found.items()} if isinstance(found, dict) else None

    def logits(self, texts: Sequence[str], contexts: Sequence[Context] | None = None) -> np.ndarray:
        """Uncalibrated class scores, one row per text, columns in `classes` order."""
        texts, contexts = _texts_and_contexts(texts, contexts)
        rows = [
            self._fast.logits_texts(texts[i : i + CHUNK], contexts[i : i + CHUNK])[0]
            for i in range(0, len(texts), CHUNK)
        ]
        return np.vstack(rows) if rows else np.empty((0, len(self._classes)))

    def reference_logits(
        self, texts: Sequence[str], contexts: Sequence[Context] | None = None
    ) -> np.ndarray:
        """The same scores through the scikit-learn pipeline (slow; the fast path's reference)."""
        return _logits(self._classifier, self._features.transform(as_docs(texts, contexts)))

    def predict_proba(
        self, texts: Sequence[str], contexts: Sequence[Context] | None = None
    ) -> np.ndarray:
        """Calibrated probabilities, one row per text, columns in `classes` order."""
        return softmax(self.logits(texts, contexts), self._temperature)

    def predict(
        self,
        texts: Sequence[str],
        contexts: Sequence[Context] | None = None,
        *,
        explain: bool = True,
    ) -> list[Prediction]:
        """One prediction per text; ``explain=False`` leaves `explanation` empty (faster). The
        texts are encoded together (``batch.BatchEncoder``); explanations encode each text again
        to credit its words."""
        texts, contexts = _texts_and_contexts(texts, contexts)
        predictions: list[Prediction] = []
        for start in range(0, len(texts), CHUNK):  # bounded memory for any batch size
            chunk, chunk_contexts = texts[start : start + CHUNK], contexts[start : start + CHUNK]
            logits, languages = self._fast.logits_texts(chunk, chunk_contexts)
            proba = softmax(logits, self._temperature)
            best = proba.argmax(axis=1).tolist()
            confidence = proba.max(axis=1).tolist()
            explanations: list[tuple[str, ...]] = [()] * len(chunk)
            if explain:
                pairs = zip(chunk, chunk_contexts, strict=True)
                encoded = [self._fast.encode(text, context) for text, context in pairs]
                self._fast.logits(encoded, keep=True)
                explanations = [
                    self._explainer.explain(e, k) for e, k in zip(encoded, best, strict=True)
                ]
            predictions += [
                Prediction(
                    label=self._classes[k],
                    confidence=confidence[i],
                    language=languages[i],
                    explanation=explanations[i],
                    model_version=self.version,
                )
                for i, k in enumerate(best)
            ]
        return predictions

    def clear_caches(self) -> None:
        """Forget the per-word char n-gram columns remembered so far (for cold measurements)."""
        self._fast.clear_cache()

    def predict_one(self, text: str, context: Context | None = None) -> Prediction:
        encoded = self._fast.encode(text, context or Context())
        proba = softmax(self._fast.logits_one(encoded)[None, :], self._temperature)[0]
        k = int(proba.argmax())
        return Prediction(
            label=self._classes[k],
            confidence=float(proba[k]),
            language=encoded.language,
            explanation=self._explainer.explain(encoded, k),
            model_version=self.version,
        )

    def save(self, directory: Path) -> Path:
        """Write ``<version>.joblib`` and ``<version>.json`` (metadata + artifact sha256)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        artifact = directory / f"{self.version}.joblib"
        tmp = directory / f".{self.version}.joblib.{os.getpid()}.tmp"
        joblib.dump({"format": ARTIFACT_FORMAT, "pipeline": self._pipeline}, tmp)
        digest = _sha256_file(tmp)
        os.replace(tmp, artifact)
        record = {**self._metadata, "artifact": artifact.name, "artifact_sha256": digest}
        write_atomic(artifact.with_suffix(".json"), json.dumps(record, indent=2, sort_keys=True))
        return artifact

    @classmethod
    def load(cls, path: Path) -> Model:
        """Load ``<version>.joblib`` (or its ``.json``) only if its sha256 matches the metadata
        and it was saved by this scikit-learn version and feature recipe."""
        path = Path(path)
        artifact = path.with_suffix(".joblib")
        meta_path = path.with_suffix(".json")
        if not meta_path.is_file():
            raise ArtifactIntegrityError(f"refusing to load {artifact}: no metadata {meta_path}")
        try:
            metadata = json.loads(meta_path.read_text(encoding="utf-8"))
            expected = str(metadata["artifact_sha256"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactIntegrityError(f"refusing to load {artifact}: bad metadata") from exc
        if not artifact.is_file():
            raise ArtifactIntegrityError(f"refusing to load {artifact}: file missing")
        actual = _sha256_file(artifact)
        if not hmac.compare_digest(actual, expected):
            raise ArtifactIntegrityError(
                f"refusing to load {artifact}: sha256 {actual} does not match {expected} "
                f"recorded in {meta_path.name} (file modified or corrupted)"
            )
        if metadata.get("sklearn_version") != sklearn.__version__:
            raise IncompatibleArtifactError(
                f"{artifact} was saved with scikit-learn {metadata.get('sklearn_version')}, "
                f"this is {sklearn.__version__}"
            )
        if metadata.get("recipe") != RECIPE:
            raise IncompatibleArtifactError(
                f"{artifact} uses recipe {metadata.get('recipe')!r}, expected {RECIPE!r}"
            )
        payload = joblib.load(artifact)
        if not (
            isinstance(payload, dict)
            and payload.get("format") == ARTIFACT_FORMAT
            and isinstance(payload.get("pipeline"), Pipeline)
        ):
            raise ArtifactIntegrityError(f"{artifact} does not hold a Relais model")
        return cls(payload["pipeline"], metadata)


def _texts_and_contexts(
    texts: Sequence[str], contexts: Sequence[Context] | None
) -> tuple[list[str], list[Context]]:
    texts = list(texts)
    if contexts is None:
        return texts, [Context()] * len(texts)
    if len(contexts) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(contexts)} contexts")
    return texts, list(contexts)


def holdout_mask(examples: Sequence[Example], fraction: float) -> np.ndarray:
    """True for the rows held out: a stable split by the sha256 of the normalised text, so an
    example falls on the same side in every training (the current model never trained on the
    rows a new one is compared on) and duplicates never straddle it."""
    cut = int(fraction * 2**32)
    return np.array(
        [
            int.from_bytes(hashlib.sha256(normalise(ex.text).encode("utf-8")).digest()[:4], "big")
            < cut
            for ex in examples
        ],
        dtype=bool,
    )


def train(
    examples: Sequence[Example],
    *,
    seed: int = 0,
    holdout: float = 0.2,
    progress: Callable[[str], None] | None = None,
) -> Model:
    """Fit on the examples outside a stable held-out split (``holdout_mask``); on the held-out
    rows, score the model, fit its temperature and review thresholds (``calibration``) and record
    them in the metadata. ``holdout=0`` (or too few examples) fits on everything, uncalibrated."""
    say = progress or (lambda message: None)
    examples = list(examples)
    labels = [ex.label for ex in examples]
    counts = Counter(labels)
    if len(counts) < 2:
        raise ValueError(f"need at least two labels to train, got {sorted(counts)}")
    started = time.perf_counter()
    docs = [(ex.text, ex.context) for ex in examples]
    held = np.zeros(len(examples), dtype=bool)
    if holdout > 0 and min(counts.values()) * holdout >= 1:
        held = holdout_mask(examples, holdout)
        if len({labels[i] for i in np.flatnonzero(~held)}) < 2:
            held[:] = False
    fit_idx, test_idx = np.flatnonzero(~held), np.flatnonzero(held)
    say(f"fitting on {len(fit_idx)} examples ({len(test_idx)} held out)")
    pipeline = build_pipeline(seed).fit([docs[i] for i in fit_idx], [labels[i] for i in fit_idx])
    classes = [str(c) for c in pipeline.classes_]
    metrics: dict[str, Any] | None = None
    temperature = 1.0
    thresholds: dict[str, float] | None = None
    if len(test_idx):
        say(f"scoring and calibrating on {len(test_idx)} held-out examples")
        logits = _logits(pipeline.named_steps["clf"], pipeline.named_steps["features"].transform(
            [docs[i] for i in test_idx]
        ))
        truth_labels = [labels[i] for i in test_idx]
        known = np.array([label in classes for label in truth_labels])
        truth = np.array([classes.index(t) if t in classes else -1 for t in truth_labels])
        predicted = [classes[k] for k in logits.argmax(axis=1)]
        metrics = {
            "holdout": holdout,
            **scores(truth_labels, predicted, sorted(set(classes) | set(truth_labels))),
        }
        if known.sum() >= 2 * len(classes):
            temperature, thresholds, report = calibrate(logits[known], truth[known], classes, seed=seed)
            metrics["calibration"] = report
    data_sha = examples_sha256(examples)
    created = datetime.now(UTC)
    metadata: dict[str, Any] = {
        "version": f"m-{created:%Y%m%d}-{data_sha[:8]}",
        "created_at": created.isoformat(timespec="seconds"),
        "classes": classes,
        "training_data_sha256": data_sha,
        "n_examples": len(examples),
        "n_trained": len(fit_idx),
        "n_held_out": len(test_idx),
        "label_counts": dict(sorted(counts.items())),
        "metrics": metrics,
        "temperature": round(temperature, 6),
        "review_thresholds": thresholds,
        "seed": seed,
        "recipe": RECIPE,
        "sklearn_version": sklearn.__version__,
        "train_seconds": round(time.perf_counter() - started, 3),
    }
    return Model(pipeline, metadata)


def _logits(classifier: LogisticRegression, features: Any) -> np.ndarray:
    scores = np.asarray(classifier.decision_function(features), dtype=np.float64)
    if scores.ndim == 1:  # binary: predict_proba is sigmoid(d) = softmax([0, d])
        scores = np.column_stack([np.zeros_like(scores), scores])
    return scores


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
