"""The batched encoder (one regex pass per chunk) against the per-text path it replaces."""

from __future__ import annotations

import random
import re
from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from classifiers import Context, Example, Model
from classifiers.batch import _FR_ELISION_FAST, BatchEncoder
from classifiers.features import _MONEY, _SHOUT, normalise
from classifiers.language import _FR_ELISION, detect_language

# Pieces that exercise every pattern: links, handles, numbers, contractions and elisions,
# elongations, emoji, accents, compatibility characters, unusual whitespace, caps, money.
PIECES = list("abcdeéèàçÉÀÝQWXYZ'’‘`!?$€£.,:;-_@#0123456789 \n\t") + [
    "http://x.co/a", "HTTPS://Y.fr/b?c=1", "www.a.b", "wwwx", "@Bob_2", "#promo", "12345",
    "won't", "can't", "won't'd", "WON'T", "xcan't", "don't", "isn't", "it's", "what's", "she's", "he's",
    "that'd", "i'm", "we're", "you've", "l'", "j'ai", "qu'il", "jusqu'à", "n'est", "aujourd'hui",
    "pas ", "jamais ", "ne ", "n'", "plus ", "pas très bon", "not great", "nuuuul", "!!!",
    "...", "aaa", "1111", "²²²", "😡", "😂", "👍", "🤔", "⭐", "❤", "☹", "🙃🙃🙃", "Σ", "ﬁ", "½",
    "œ", "Œuvre", "  ", "\u2028", "\x1c", "\u00a0", "\u3000", "5 $", "€5", "10 euros", "PAS BON",
    "pis", "icitte", "the", "und", "der", "très", "déçu", "×ABCD", "ÉTÉ", "5$", "£ 3", "l'l'a",
]
CONTEXTS = [
    Context(),
    Context("x", "mention"),
    Context("facebook", "comment", True),
    Context(" Face Book ", "Comment", True),
    Context("instagram", "post"),
]


def fuzz_texts(count: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    return ["".join(rnd.choice(PIECES) for _ in range(rnd.randint(0, 25))) for _ in range(count)]


def reference_normalise(text: str) -> str:
    """`features.normalise` as first written, before its patterns were made batch-friendly."""
    text = re.sub(r"[’‘`´]", "'", text)
    text = re.sub(r"https?://\S+|www\.\S+", " __url__ ", text, flags=re.IGNORECASE)
    text = re.sub(r"@\w+", " __user__ ", text)
    text = re.sub(r"\d{4,}", " __num__ ", text)
    text = text.lower().replace("#", " ")
    text = re.sub(r"\bwon't\b", "will not", text)
    text = re.sub(r"\bcan't\b", "can not", text)
    text = re.sub(r"n't\b", " not", text)
    text = re.sub(r"(\D)\1{2,}", r"\1\1", text)
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def corpus(seed_examples: list[Example]) -> tuple[list[str], list[Context]]:
    sample = seed_examples[::4]
    texts = [e.text for e in sample] + fuzz_texts(1500) + ["", " ", "\n\n"]
    rnd = random.Random(3)
    contexts = [e.context for e in sample] + [rnd.choice(CONTEXTS) for _ in range(len(texts) - len(sample))]
    return texts, contexts


def test_normalise_keeps_its_original_meaning(corpus: tuple[list[str], list[Context]]) -> None:
    texts, _ = corpus
    assert [normalise(t) for t in texts] == [reference_normalise(t) for t in texts]


def counters(matrix: csr_matrix) -> list[Counter[int]]:
    return [
        Counter(dict(zip(matrix.indices[a:b].tolist(), matrix.data[a:b].astype(int).tolist(), strict=True)))
        for a, b in pairwise(matrix.indptr.tolist())
    ]


def test_batch_encoding_equals_the_per_text_encoding(
    seed_model: Model, corpus: tuple[list[str], list[Context]]
) -> None:
    texts, contexts = corpus
    scorer = seed_model._fast  # noqa: SLF001 - the two encoders of one scorer, compared
    views, languages = scorer._batch.encode(texts, contexts)  # noqa: SLF001
    single = [scorer.encode(t, c) for t, c in zip(texts, contexts, strict=True)]
    assert languages == [detect_language(t) for t in texts]
    for matrix, name in zip(views, ("word_columns", "char_columns", "cue_columns"), strict=True):
        batched = counters(matrix)
        expected = [Counter(getattr(e, name)) for e in single]
        if name == "cue_columns":  # binary view: presence is what counts
            assert [set(c) for c in batched] == [set(c) for c in expected]
        else:
            assert batched == expected, name


def test_full_caches_are_emptied_without_changing_results(
    seed_model: Model, corpus: tuple[list[str], list[Context]]
) -> None:
    texts, contexts = corpus
    scorer = seed_model._fast  # noqa: SLF001
    word, char, cues = scorer._word, scorer._char, scorer._cues  # noqa: SLF001
    assert word.token_pattern is not None
    small = BatchEncoder(
        word.vocabulary, word.token_pattern.pattern, word.ngram_range, scorer._char_columns,  # noqa: SLF001
        len(char.vocabulary), cues.vocabulary, cache_max=40,
    )
    for start in range(0, 300, 60):  # each chunk overflows the 40-word caches
        chunk, chunk_contexts = texts[start : start + 60], contexts[start : start + 60]
        views, languages = small.encode(chunk, chunk_contexts)
        assert languages == [detect_language(t) for t in chunk]
        expected = [scorer.encode(t, c) for t, c in zip(chunk, chunk_contexts, strict=True)]
        assert counters(views[1]) == [Counter(e.char_columns) for e in expected]


def test_rewritten_patterns_find_what_the_originals_found(corpus: tuple[list[str], list[Context]]) -> None:
    texts, _ = corpus
    originals = {
        _MONEY: re.compile(r"[$€£]\s?\d|\d\s?(?:[$€£]|euros?\b|dollars?\b|\$)"),
        _SHOUT: re.compile(r"\b[A-ZÀ-Ý]{4,}\b"),
        _FR_ELISION_FAST: _FR_ELISION,
    }
    for fast, original in originals.items():
        for text in texts:
            folded = text.lower() if fast is _FR_ELISION_FAST else text
            assert [m.span() for m in fast.finditer(folded)] == [m.span() for m in original.finditer(folded)]


def test_batched_predictions_equal_single_ones(
    seed_model: Model, corpus: tuple[list[str], list[Context]]
) -> None:
    texts, contexts = corpus
    texts, contexts = texts[::5], contexts[::5]
    batch = seed_model.predict(texts, contexts, explain=False)
    single = [seed_model.predict_one(t, c) for t, c in zip(texts, contexts, strict=True)]
    assert [p.label for p in batch] == [p.label for p in single]
    assert [p.language for p in batch] == [p.language for p in single]
    assert np.allclose([p.confidence for p in batch], [p.confidence for p in single], rtol=0, atol=1e-9)


def test_a_text_holding_nul_is_scored_like_alone(seed_model: Model) -> None:
    texts = ["colis jamais reçu\x00 remboursez-moi", "Trop drôle cette pub 😂", "\x00"]
    batch = seed_model.predict(texts, explain=False)
    single = [seed_model.predict_one(t) for t in texts]
    assert [(p.label, p.language) for p in batch] == [(p.label, p.language) for p in single]
    assert np.allclose([p.confidence for p in batch], [p.confidence for p in single], atol=1e-9)
