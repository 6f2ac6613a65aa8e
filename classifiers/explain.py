"""Which words and cues pushed a linear model toward its decision.

The contribution of a feature to class k is ``x_i * (w_ki - mean_j w_ji)``: positive means it
pushed toward k more than toward the average class. Char n-gram contributions are credited to
the words of the text that contain them, so the explanation names words, never n-grams.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.pipeline import FeatureUnion

from classifiers.features import VIEWS, fold_accents, normalise

MAX_TERMS = 5
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
        self._views: list[str] = []
        terms: list[str] = []
        for name, part in union.transformer_list:
            vocabulary = part.named_steps["tfidf"].get_feature_names_out()
            self._views.extend([name] * len(vocabulary))
            terms.extend(str(t) for t in vocabulary)
        self._terms = terms
        self._view_codes = np.array([VIEWS.index(v) for v in self._views], dtype=np.int8)
        if len(terms) != self._weights.shape[1]:
            raise ValueError("feature names do not match the model's weights")

    def explain(self, row: csr_matrix, klass: int, text: str) -> tuple[str, ...]:
        indices = row.indices
        contributions = row.data * self._weights[klass, indices]
        surface = [_EDGE_PUNCT.sub("", token) for token in normalise(text).split()]
        folded = [fold_accents(token) for token in surface]
        padded = [f" {token} " for token in folded]
        display = {key: word for key, word in zip(folded, surface, strict=True) if key}
        totals: dict[str, float] = defaultdict(float)
        labels: dict[str, str] = {}
        for index, value in zip(indices, contributions, strict=True):
            view = VIEWS[self._view_codes[index]]
            term = self._terms[index]
            if view == "cues":
                totals["cue:" + term] += value
                labels["cue:" + term] = _cue_label(term)
            elif view == "word" and " " in term:
                totals["bigram:" + term] += value
                labels["bigram:" + term] = _quote(term)
            elif view == "word":
                key = fold_accents(term)
                totals[key] += value
                labels[key] = _quote(display.get(key, term))
            else:
                owners = [folded[i] for i, word in enumerate(padded) if term in word and folded[i]]
                for key in owners:
                    totals[key] += value / len(owners)
                    labels.setdefault(key, _quote(display.get(key, key)))
        ranked = sorted(
            (item for item in totals.items() if item[1] > 0 and not _is_quiet(item[0])),
            key=lambda kv: (-kv[1], kv[0]),
        )
        return tuple(labels[key] for key, _ in ranked[:MAX_TERMS])
