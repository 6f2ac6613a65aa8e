"""Which words and cues pushed a linear model toward its decision.

The contribution of a feature to class k is ``x_i * (w_ki - mean_j w_ji)``: positive means it
pushed toward k more than toward the average class. Only the text's non-zero features are
looked at. Char n-gram contributions are credited to the words they were cut from (recorded by
``fast.FastScorer.encode``), so the explanation names words, never n-grams.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
from sklearn.pipeline import FeatureUnion

from classifiers.fast import Encoded
from classifiers.features import VIEWS, fold_accents

MAX_TERMS = 5
_CHAR_VIEW, _CUE_VIEW = VIEWS.index("char"), VIEWS.index("cues")
_EDGE_PUNCT = re.compile(r"^[^\w]+|[^\w]+$")
_PLACEHOLDERS = {"__url__": "a link", "__user__": "an @handle", "__num__": "a long number"}
_CUES = {
    "__parent_ad__": "parent post is an ad",
    "__ad_comment__": "comment under an ad",
    "__exclaims__": "repeated exclamation marks",
    "__question__": "question mark",
    "__shout__": "ALL-CAPS words",
    "__money__": "an amount of money",
    "__short__": "very short text",
    "__emoji_neg__": "negative emoji",
    "__emoji_pos__": "positive emoji",
    "__emoji_laugh__": "laughing emoji",
    "__emoji_doubt__": "doubtful emoji",
    "__emoji_other__": "emoji",
}


# Function words and the language cue carry weight but tell a reader nothing; they are left
# out of the explanation (negations such as "pas", "not", "jamais" are kept on purpose).
_QUIET_WORDS = frozenset(
    """the a an is are was were be to of in on at it its this that and or but for with my i
    me we you your our they he she le la les un une des de du et est sont à au aux en ce ces
    cet cette que qui il elle je tu on se sa son ses mon ma mes vos votre nos notre ça ca y
    c j l d n s m t qu""".split()
)


def _is_quiet(key: str) -> bool:
    return key in _QUIET_WORDS or key.startswith("cue:__lang_")


def _cue_label(token: str) -> str:
    if token in _CUES:
        return _CUES[token]
    if token.startswith("neg_"):
        return f"negated « {token[4:]} »"
    if token.startswith("emoji:"):
        return f"emoji {token[6:]}"
    for prefix, name in (("__platform_", "platform"), ("__kind_", "kind"), ("__lang_", "language")):
        if token.startswith(prefix):
            return f"{name}: {token[len(prefix) : -2]}"
    return token


def _quote(term: str) -> str:
    return _PLACEHOLDERS.get(term, f"« {term} »")


class Explainer:
    """Built once per fitted model from its feature union and linear weights."""

    def __init__(self, union: FeatureUnion, coef: np.ndarray) -> None:
        if coef.shape[0] == 1:  # binary: one weight row for the positive class
            coef = np.vstack([-coef[0], coef[0]])
        self._weights = coef - coef.mean(axis=0, keepdims=True)
        views: list[int] = []
        terms: list[str] = []
        for name, part in union.transformer_list:
            vocabulary = part.named_steps["tfidf"].vocabulary_
            names = [""] * len(vocabulary)
            for term, column in vocabulary.items():
                names[column] = str(term)
            views.extend([VIEWS.index(name)] * len(names))
            terms.extend(names)
        self._terms = terms
        self._char_offset = views.index(_CHAR_VIEW)
        self._view_codes = np.array(views, dtype=np.int8)
        self._keys: dict[int, str] = {}  # filled on first use (folding every term is slow)
        if len(terms) != self._weights.shape[1]:
            raise ValueError("feature names do not match the model's weights")

    def _key(self, index: int) -> str:
        """What a feature's contribution is added to: words accent-folded, so that a word
        unigram and the char n-grams of the same word add up."""
        term = self._terms[index]
        if self._view_codes[index] == _CUE_VIEW:
            key = "cue:" + term
        else:
            key = "bigram:" + term if " " in term else fold_accents(term)
        self._keys[index] = key
        return key

    def explain(self, encoded: Encoded, klass: int) -> tuple[str, ...]:
        """Up to MAX_TERMS labels, strongest push toward `klass` first. Char n-gram
        contributions are shared equally among their occurrences and credited to the word each
        occurrence came from; labels are built for the kept terms only."""
        indices, values = encoded.indices, encoded.values
        if indices is None or values is None:
            raise ValueError("score the text before explaining it (FastScorer.logits)")
        contributions = values * self._weights[klass, indices]
        codes = self._view_codes[indices]
        totals: dict[str, float] = defaultdict(float)
        kinds: dict[str, int] = {}
        where: dict[str, int] = {}  # a word's position among the char view's words
        other = codes != _CHAR_VIEW
        for index, value in zip(indices[other].tolist(), contributions[other].tolist()):
            key = self._keys.get(index) or self._key(index)
            totals[key] += value
            kinds.setdefault(key, index)
        keys = encoded.char_keys
        if encoded.char_columns:
            order = np.argsort(indices, kind="stable")
            position = np.searchsorted(indices[order], encoded.occ_features + self._char_offset)
            shares = (contributions[order] / np.bincount(position, minlength=len(order)).clip(1))[
                position
            ]
            per_word = np.bincount(encoded.occ_words, weights=shares, minlength=len(keys))
            for position, value in enumerate(per_word.tolist()):
                key = keys[position]
                if value and key:
                    totals[key] += value
                    where.setdefault(key, position)
        ranked = sorted(
            (item for item in totals.items() if item[1] > 0 and not _is_quiet(item[0])),
            key=lambda kv: (-kv[1], kv[0]),
        )[:MAX_TERMS]
        if not ranked:
            return ()
        tokens = encoded.normalised.split()
        same_words = len(tokens) == len(encoded.char_parts)  # folding made no new space
        labels: list[str] = []
        for key, _ in ranked:
            index = kinds.get(key)
            term = key if index is None else self._terms[index]
            if index is not None and self._view_codes[index] == _CUE_VIEW:
                labels.append(_cue_label(term))
            elif key.startswith("bigram:"):
                labels.append(_quote(term))
            else:  # a word: shown as written (accents kept) when its position is known
                position = where.get(key)
                if position is None and same_words:
                    position = next((i for i, k in enumerate(keys) if k == key), None)
                shown = _EDGE_PUNCT.sub("", tokens[position]) if same_words and position is not None else ""
                labels.append(_quote(shown or term))
        return tuple(labels)
