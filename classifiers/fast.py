"""Inference without scikit-learn's per-call machinery: the fitted vocabularies, idf weights and
coefficients of the pipeline, applied directly.

Each text is normalised once, its language guessed once, then the three views are built exactly
as the fitted ``TfidfVectorizer``s build them (same tokens and n-grams, sublinear tf, idf, l2
norm, union weights), and the class scores are a dot product with the coefficients. A test holds
the probabilities to those of the scikit-learn pipeline within 1e-6. The char n-grams of each
word are remembered with the word they came from, so an explanation credits words in one pass.
That is the path of one text (``encode``); many texts are encoded together by
``batch.BatchEncoder`` (``logits_texts``), into the same counts.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, pairwise

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.pipeline import Pipeline

from classifiers.batch import BatchEncoder, count_pairs
from classifiers.domain import Context
from classifiers.features import VIEWS, cue_tokens, fold_accents, normalise
from classifiers.language import detect_language

_EDGE_PUNCT = re.compile(r"^[^\w]+|[^\w]+$")
CHAR_CACHE_MAX = 200_000  # distinct words whose char n-gram columns are remembered


@dataclass(slots=True)
class Encoded:
    """One text as term occurrences per view, plus what explanations need; `indices`/`values`
    (union columns and the union's values) are filled by ``FastScorer.logits``."""

    text: str
    normalised: str
    language: str
    word_columns: list[int]  # each known word n-gram occurrence: its word-view column
    char_parts: list[tuple[str, str, tuple[int, ...]]]  # per word of the char view: the folded
    # word, the same without edge punctuation, its known char n-gram columns (repeats kept)
    char_columns: list[int]  # all those columns, in order
    cue_columns: list[int]
    indices: np.ndarray | None = None
    values: np.ndarray | None = None

    @property
    def char_words(self) -> list[str]:
        return [part[0] for part in self.char_parts]

    @property
    def char_keys(self) -> list[str]:
        return [part[1] for part in self.char_parts]

    @property
    def occ_features(self) -> np.ndarray:
        return np.asarray(self.char_columns, dtype=np.int64)

    @property
    def occ_words(self) -> np.ndarray:
        counts = [len(part[2]) for part in self.char_parts]
        return np.repeat(np.arange(len(counts)), counts)


class _View:
    def __init__(self, pipeline: Pipeline, weight: float, offset: int) -> None:
        vectorizer = pipeline.named_steps["tfidf"]
        self.vocabulary: dict[str, int] = {str(k): int(v) for k, v in vectorizer.vocabulary_.items()}
        self.offset = offset
        self.weight = float(weight)
        self.sublinear = bool(vectorizer.sublinear_tf)
        self.binary = bool(vectorizer.binary)
        self.norm = vectorizer.norm
        if self.norm not in (None, "l2"):
            raise ValueError(f"unsupported norm {self.norm!r}")
        self.idf = np.asarray(vectorizer.idf_, dtype=np.float64) if vectorizer.use_idf else None
        self.ngram_range: tuple[int, int] = tuple(vectorizer.ngram_range)  # type: ignore[assignment]
        self.token_pattern = re.compile(vectorizer.token_pattern) if vectorizer.token_pattern else None

    def _transform(self, indices: np.ndarray, data: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Counts -> the vectorizer's values (binary or sublinear tf, idf, l2 per row) * weight."""
        if self.binary:
            data = np.ones_like(data)
        elif self.sublinear:
            data = np.log(data) + 1.0
        if self.idf is not None:
            data = data * self.idf[indices]
        if self.norm == "l2" and len(data):
            filled = lengths > 0
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[filled]
            sums = np.zeros(len(lengths))
            sums[filled] = np.add.reduceat(data * data, starts)
            data = data / np.repeat(np.sqrt(sums), lengths)
        return data * self.weight

    def weigh_one(self, columns: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Union column indices and values of one text from its term occurrences."""
        counts = Counter(columns)
        n = len(counts)
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=n)
        data = np.fromiter(counts.values(), dtype=np.float64, count=n)
        if self.binary:
            data[:] = 1.0
        elif self.sublinear:
            data = np.log(data) + 1.0
        if self.idf is not None:
            data *= self.idf[idx]
        if self.norm == "l2" and n:
            data /= math.sqrt(float(data @ data))
        return idx + self.offset, data * self.weight

    def weigh_many(self, columns: Sequence[list[int]]) -> csr_matrix:
        """One row per text, in this view's own columns, from each text's term occurrences."""
        n_rows = len(columns)
        lengths = np.fromiter(map(len, columns), dtype=np.int64, count=n_rows)
        flat = np.fromiter(chain.from_iterable(columns), dtype=np.int64, count=int(lengths.sum()))
        return self.weigh_pairs(np.repeat(np.arange(n_rows, dtype=np.int64), lengths), flat, n_rows)

    def weigh_pairs(self, rows: np.ndarray, columns: np.ndarray, n_rows: int) -> csr_matrix:
        """One row per text, in this view's own columns, from (text, column) term occurrences."""
        counts = count_pairs(rows, columns, n_rows, len(self.vocabulary))
        values = self._transform(counts.indices, counts.data, np.diff(counts.indptr))
        return csr_matrix((values, counts.indices, counts.indptr), shape=counts.shape)

    def score_counts(self, counts: csr_matrix, coef: np.ndarray) -> np.ndarray:
        """Class scores of (texts x this view's columns) term counts: ``weigh(...) @ coef``,
        with each row's l2 norm applied to its scores rather than to each of its values."""
        if self.binary:
            data = np.ones(len(counts.data))
        else:
            data = counts.data.astype(np.float64)
            if self.sublinear:
                repeated = data > 1
                data[repeated] = np.log(data[repeated]) + 1.0
        if self.idf is not None:
            data *= self.idf[counts.indices]
        weighed = csr_matrix((data, counts.indices, counts.indptr), shape=counts.shape)
        scores = np.asarray(weighed @ coef)
        if self.norm == "l2":
            rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
            norms = np.sqrt(np.bincount(rows, weights=data * data, minlength=counts.shape[0]))
            scores /= np.where(norms > 0, norms, 1.0)[:, None]
        return scores * self.weight


class FastScorer:
    """Built once from a fitted ``Pipeline([("features", FeatureUnion), ("clf", linear)])``."""

    def __init__(self, pipeline: Pipeline) -> None:
        union = pipeline.named_steps["features"]
        names = [name for name, _ in union.transformer_list]
        if tuple(names) != VIEWS:
            raise ValueError(f"unexpected feature views {names}")
        if union.transformer_list[1][1].named_steps["tfidf"].analyzer != "char_wb":
            raise ValueError("the char view must be char_wb n-grams")
        weights = union.transformer_weights or {}
        views: list[_View] = []
        offset = 0
        for name, part in union.transformer_list:
            view = _View(part, weights.get(name, 1.0), offset)
            views.append(view)
            offset += len(view.vocabulary)
        self._word, self._char, self._cues = views
        self.n_features = offset
        classifier = pipeline.named_steps["clf"]
        coef = np.asarray(classifier.coef_, dtype=np.float64)
        intercept = np.asarray(classifier.intercept_, dtype=np.float64)
        if coef.shape[1] != offset:
            raise ValueError("feature count does not match the classifier")
        if coef.shape[0] == 1:  # binary: scores [0, d], as predict_proba = sigmoid(d)
            coef = np.vstack([np.zeros_like(coef[0]), coef[0]])
            intercept = np.array([0.0, intercept[0]])
        self._coef_t = np.ascontiguousarray(coef.T)  # (features, classes): rows gathered per text
        self._intercept = intercept
        self._char_cache: dict[str, tuple[tuple[str, str, tuple[int, ...]], ...]] = {}
        assert self._word.token_pattern is not None
        self._batch: BatchEncoder | None = None  # None: word features it does not know
        try:
            self._batch = BatchEncoder(
                self._word.vocabulary,
                self._word.token_pattern.pattern,
                self._word.ngram_range,
                self._char_columns,
                len(self._char.vocabulary),
                self._cues.vocabulary,
            )
        except ValueError:
            pass

    def clear_cache(self) -> None:
        self._char_cache.clear()
        if self._batch is not None:
            self._batch.clear_cache()

    # -- features ---------------------------------------------------------------------------

    def _word_columns(self, normalised: str) -> list[int]:
        assert self._word.token_pattern is not None
        tokens = self._word.token_pattern.findall(normalised)
        low, high = self._word.ngram_range
        grams: list[str] = tokens if low == 1 else []
        for n in range(max(low, 2), high + 1):
            if n == 2:
                grams = grams + [f"{a} {b}" for a, b in pairwise(tokens)]
            else:
                grams = grams + [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        return [j for j in map(self._word.vocabulary.get, grams) if j is not None]

    def _char_parts(self, word: str) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
        """The accent-folded word (rarely several: folding can make a space) with the known
        char n-gram columns of each part (``_cut_char_parts``), remembered per word."""
        found = self._char_cache.get(word)
        if found is not None:
            return found
        found = self._cut_char_parts(word)
        if len(self._char_cache) < CHAR_CACHE_MAX:
            self._char_cache[word] = found
        return found

    def _cut_char_parts(self, word: str) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
        """By the rules of scikit-learn's ``char_wb`` analyzer: each folded part padded with
        one space each side; a part not longer than n counted once, whole. A pure function of
        the word."""
        low, high = self._char.ngram_range
        vocab = self._char.vocabulary
        parts = []
        for folded in fold_accents(word).split():
            padded = f" {folded} "
            size = len(padded)
            grams: list[str] = []
            for n in range(low, high + 1):
                if size <= n:
                    grams.append(padded)
                    break
                grams += [padded[i : i + n] for i in range(size - n + 1)]
            columns = tuple(j for j in map(vocab.get, grams) if j is not None)
            parts.append((folded, _EDGE_PUNCT.sub("", folded), columns))
        return tuple(parts)

    def _char_columns(self, word: str) -> tuple[int, ...]:
        return tuple(chain.from_iterable(part[2] for part in self._cut_char_parts(word)))

    def encode(self, text: str, context: Context) -> Encoded:
        normalised = normalise(text)
        language = detect_language(text)
        parts = list(chain.from_iterable(map(self._char_parts, normalised.split())))
        cues = " ".join(cue_tokens(text, context, normalised=normalised, language=language))
        assert self._cues.token_pattern is not None
        vocab = self._cues.vocabulary
        return Encoded(
            text=text,
            normalised=normalised,
            language=language,
            word_columns=self._word_columns(normalised),
            char_parts=parts,
            char_columns=list(chain.from_iterable(part[2] for part in parts)),
            cue_columns=[j for j in map(vocab.get, self._cues.token_pattern.findall(cues)) if j is not None],
        )

    # -- scores -----------------------------------------------------------------------------

    def logits_one(self, encoded: Encoded) -> np.ndarray:
        """Class scores of one text; fills its `indices` and `values`."""
        parts = [
            self._word.weigh_one(encoded.word_columns),
            self._char.weigh_one(encoded.char_columns),
            self._cues.weigh_one(encoded.cue_columns),
        ]
        encoded.indices = np.concatenate([idx for idx, _ in parts])
        encoded.values = np.concatenate([val for _, val in parts])
        return self._intercept + encoded.values @ self._coef_t[encoded.indices]

    def logits_texts(
        self, texts: Sequence[str], contexts: Sequence[Context]
    ) -> tuple[np.ndarray, list[str]]:
        """Class scores (one row per text) and languages of many texts, encoded together
        (``batch.BatchEncoder``); texts containing NUL go through the per-text path."""
        if not texts:
            return np.empty((0, len(self._intercept))), []
        if self._batch is None or not BatchEncoder.accepts(texts):
            encoded = [self.encode(t, c) for t, c in zip(texts, contexts, strict=True)]
            return self.logits(encoded), [e.language for e in encoded]
        counts, languages = self._batch.encode(texts, contexts)
        scores = np.tile(self._intercept, (len(texts), 1))
        for view, matrix in zip((self._word, self._char, self._cues), counts, strict=True):
            coef = self._coef_t[view.offset : view.offset + len(view.vocabulary)]
            scores += view.score_counts(matrix, coef)
        return scores, languages

    def logits(self, encoded: Sequence[Encoded], *, keep: bool = False) -> np.ndarray:
        """Class scores, one row per text; ``keep=True`` also fills each `indices`/`values`
        (needed by explanations)."""
        if not encoded:
            return np.empty((0, len(self._intercept)))
        matrices = [
            self._word.weigh_many([e.word_columns for e in encoded]),
            self._char.weigh_many([e.char_columns for e in encoded]),
            self._cues.weigh_many([e.cue_columns for e in encoded]),
        ]
        scores = np.tile(self._intercept, (len(encoded), 1))
        for view, matrix in zip((self._word, self._char, self._cues), matrices, strict=True):
            rows = self._coef_t[view.offset : view.offset + len(view.vocabulary)]
            scores += np.asarray(matrix @ rows)
        if keep:
            for i, e in enumerate(encoded):
                spans = [
                    (m.indptr[i], m.indptr[i + 1], m, v.offset)
                    for m, v in zip(matrices, (self._word, self._char, self._cues), strict=True)
                ]
                e.indices = np.concatenate([m.indices[a:b] + off for a, b, m, off in spans])
                e.values = np.concatenate([m.data[a:b] for a, b, m, _ in spans])
        return scores
