from __future__ import annotations

import numpy as np

from classifiers import Context, Example, Model, train
from classifiers.calibration import softmax

ODD_TEXTS = [
    "",
    "   ",
    "😡😡😡",
    "a\tb\n\nc  d",
    "¨ ﬁn ½ e¨f Œuvre",  # compatibility characters: folding makes new spaces
    "x" * 400,
    "Très  déçu!!! 😡 @Bob https://t.co/x 12345 NUUUUL",
    "ok ok ok ok ok",
    "I'm not happy, won't buy again... can't believe it",
    "Je n'aime pas du tout, c'est pas très bon",
]


def cases(seed_examples: list[Example]) -> tuple[list[str], list[Context]]:
    sample = seed_examples[::7]
    texts = [e.text for e in sample] + ODD_TEXTS
    contexts = [e.context for e in sample] + [
        Context(p, k, ad) for p, k, ad in zip(["x", "facebook"] * 5, ["mention", "comment"] * 5, [True, False] * 5, strict=True)
    ]
    return texts, contexts


def test_fast_path_equals_the_sklearn_pipeline(seed_model: Model, seed_examples: list[Example]) -> None:
    texts, contexts = cases(seed_examples)
    reference = seed_model.reference_logits(texts, contexts)
    assert np.abs(seed_model.logits(texts, contexts) - reference).max() < 1e-6
    proba = softmax(reference, seed_model.temperature)
    assert np.abs(seed_model.predict_proba(texts, contexts) - proba).max() < 1e-6
    singles = [seed_model.predict_one(t, c).confidence for t, c in zip(texts, contexts, strict=True)]
    assert np.abs(np.array(singles) - proba.max(axis=1)).max() < 1e-6


def test_fast_path_equals_sklearn_for_a_binary_model(mini_examples: list[Example]) -> None:
    binary = [Example(e.text, e.label if e.label == "complaint" else "not_complaint", e.language, e.context) for e in mini_examples]
    model = train(binary, holdout=0.0)
    texts = [e.text for e in mini_examples] + ODD_TEXTS
    assert np.abs(model.logits(texts) - model.reference_logits(texts)).max() < 1e-6
    assert model.predict_one("Colis jamais reçu").label in {"complaint", "not_complaint"}


def test_predict_without_explanations(seed_model: Model, seed_examples: list[Example]) -> None:
    texts, contexts = cases(seed_examples)
    full = seed_model.predict(texts, contexts)
    quick = seed_model.predict(texts, contexts, explain=False)
    assert [p.label for p in quick] == [p.label for p in full]
    assert [p.confidence for p in quick] == [p.confidence for p in full]
    assert [p.language for p in quick] == [p.language for p in full]
    assert all(p.explanation == () for p in quick)
    assert sum(bool(p.explanation) for p in full) > 0.9 * len(full)


def test_batch_and_single_explanations_agree(seed_model: Model, seed_examples: list[Example]) -> None:
    texts, contexts = cases(seed_examples)
    batch = seed_model.predict(texts, contexts)
    single = [seed_model.predict_one(t, c) for t, c in zip(texts, contexts, strict=True)]
    assert [p.explanation for p in batch] == [p.explanation for p in single]


def test_explanation_keeps_accents_and_names_no_ngram(seed_model: Model) -> None:
    prediction = seed_model.predict_one("Très déçue, la crème brûlée était immangeable")
    assert prediction.label == "complaint"
    words = {"très", "déçue", "crème", "brûlée", "immangeable", "était"}
    quoted = [e[2:-2] for e in prediction.explanation if e.startswith("« ")]
    assert quoted and all(any(q.startswith(w) or w in q for w in words) for q in quoted), prediction.explanation
