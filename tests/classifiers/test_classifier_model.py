from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from classifiers import LABELS, ArtifactIntegrityError, Context, Example, Model, train
from classifiers.calibration import softmax
from classifiers.errors import IncompatibleArtifactError


def test_prediction_fields(mini_model: Model) -> None:
    prediction = mini_model.predict_one("Je veux un remboursement, mon colis est arrivé cassé")
    assert prediction.label in LABELS
    assert 0.0 <= prediction.confidence <= 1.0
    assert prediction.language == "fr"
    assert prediction.model_version == mini_model.version
    assert re.fullmatch(r"m-\d{8}-[0-9a-f]{8}", mini_model.version)
    assert 1 <= len(prediction.explanation) <= 5


def test_batch_matches_single(mini_model: Model) -> None:
    texts = ["Still waiting for my refund", "Cette pub est géniale 😂", "Bonne semaine!"]
    contexts = [Context(), Context(kind="comment", parent_is_ad=True), Context(kind="comment")]
    batch = mini_model.predict(texts, contexts)
    single = [mini_model.predict_one(t, c) for t, c in zip(texts, contexts, strict=True)]
    assert [p.label for p in batch] == [p.label for p in single]
    assert [p.confidence for p in batch] == pytest.approx([p.confidence for p in single])
    assert mini_model.predict([]) == []
    with pytest.raises(ValueError, match="contexts"):
        mini_model.predict(texts, contexts[:1])


def test_metadata(mini_model: Model, mini_examples: list[Example]) -> None:
    meta = mini_model.metadata
    assert meta["classes"] == sorted(LABELS)
    assert meta["n_examples"] == len(mini_examples)
    assert meta["version"].endswith(meta["training_data_sha256"][:8])
    assert 0.0 <= meta["metrics"]["macro_f1"] <= 1.0
    assert {"created_at", "sklearn_version", "seed", "recipe"} <= set(meta)


def test_training_is_deterministic(mini_examples: list[Example], mini_model: Model) -> None:
    again = train(mini_examples, seed=0)
    texts = ["nice", "pas bon du tout", "Where is your store?"]
    assert np.array_equal(again.predict_proba(texts), mini_model.predict_proba(texts))


def test_save_load_round_trip_predicts_identically(mini_model: Model, tmp_path: Path) -> None:
    artifact = mini_model.save(tmp_path)
    assert artifact == tmp_path / f"{mini_model.version}.joblib"
    assert artifact.with_suffix(".json").is_file()
    loaded = Model.load(artifact)
    texts = ["Colis jamais reçu!!", "love the new ad", "Are you open on Sunday?", "😡"]
    contexts = [Context("facebook", "comment", i % 2 == 0) for i in range(len(texts))]
    assert loaded.predict(texts, contexts) == mini_model.predict(texts, contexts)
    assert loaded.version == mini_model.version


def test_tampered_artifact_is_refused(mini_model: Model, tmp_path: Path) -> None:
    artifact = mini_model.save(tmp_path)
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        Model.load(artifact)
    with pytest.raises(ValueError):  # the documented contract: a ValueError
        Model.load(artifact.with_suffix(".json"))


def test_artifact_without_metadata_is_refused(mini_model: Model, tmp_path: Path) -> None:
    artifact = mini_model.save(tmp_path)
    artifact.with_suffix(".json").unlink()
    with pytest.raises(ArtifactIntegrityError, match="no metadata"):
        Model.load(artifact)


def test_other_sklearn_version_is_refused(mini_model: Model, tmp_path: Path) -> None:
    artifact = mini_model.save(tmp_path)
    meta = artifact.with_suffix(".json")
    meta.write_text(meta.read_text().replace('"sklearn_version": "', '"sklearn_version": "0.'))
    with pytest.raises(IncompatibleArtifactError, match="scikit-learn"):
        Model.load(artifact)


def test_parent_ad_moves_a_neutral_comment_toward_ad_reaction(seed_model: Model) -> None:
    column = seed_model.classes.index("ad_reaction")
    for text in ("nice", "Intéressant", "ok 👍", "Tag a friend"):
        plain, under_ad = seed_model.predict_proba(
            [text, text], [Context("facebook", "comment"), Context("facebook", "comment", True)]
        )
        assert under_ad[column] > plain[column], text


def test_explanation_names_terms_from_the_text(seed_model: Model) -> None:
    cases = [
        ("Trois semaines que j'attends mon remboursement, service client inexistant", Context()),
        ("The delivery was late again and nobody answers the phone", Context()),
        ("Vous devriez proposer la nouvelle saveur en plus grand format", Context()),
    ]
    for text, context in cases:
        prediction = seed_model.predict_one(text, context)
        assert prediction.explanation, text
        quoted = [m for e in prediction.explanation for m in re.findall(r"« (.+?) »", e)]
        assert any(term.lower() in text.lower() for term in quoted), prediction.explanation


def test_explanation_names_the_ad_context(seed_model: Model) -> None:
    prediction = seed_model.predict_one("😍😍", Context("instagram", "comment", True))
    assert prediction.label == "ad_reaction"
    assert "parent post is an ad" in prediction.explanation


def test_seed_model_beats_08_macro_f1_on_held_out_split(seed_model: Model) -> None:
    metrics = seed_model.metadata["metrics"]
    assert metrics["n"] >= 0.15 * seed_model.metadata["n_examples"]
    assert metrics["macro_f1"] > 0.8, metrics


def test_an_older_model_without_calibration_still_loads(mini_model: Model, tmp_path: Path) -> None:
    artifact = mini_model.save(tmp_path)
    meta_path = artifact.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    for key in ("temperature", "review_thresholds"):
        meta.pop(key)
    meta_path.write_text(json.dumps(meta))
    older = Model.load(artifact)
    assert older.review_thresholds is None and older.temperature == 1.0
    texts = ["Colis jamais reçu!!", "love the new ad"]
    assert np.allclose(older.predict_proba(texts), softmax(older.reference_logits(texts)))
