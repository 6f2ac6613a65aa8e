"""Text normalisation and the feature views the model learns from.

A document is a `(text, Context)` pair. Three views are built from it:

- ``word``: normalised text (lowercase, links/handles/long numbers as placeholders), word 1-2 grams;
- ``char``: the same text with accents folded, char_wb 2-5 grams (robust to typos and to
  missing accents);
- ``cues``: tokens for the context (``__parent_ad__``, ``__kind_comment__``, ``__platform_x__``),
  the detected language, emoji classes, negated words (``neg_bon`` for "pas bon"), punctuation.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline

from classifiers.domain import Context
from classifiers.language import detect_language

Doc = tuple[str, Context]

_APOSTROPHES = re.compile(r"[’‘`´]")
# The patterns below are written so that the regex engine can skip ahead on their first
# character (a literal or a small set): normalisation runs over whole batches of text.
_URL = re.compile(r"[hw](?:ttps?://\S+|ww\.\S+)", re.IGNORECASE)  # https?://... or www....
_HANDLE = re.compile(r"@\w+")
_LONG_NUMBER = re.compile(r"\d\d\d\d+")
_REPEATS = re.compile(r"(.)\1\1+", re.DOTALL)  # elongations are the non-digit runs among these
_CONTRACTION = re.compile(r"w(?<!\ww)on't\b|c(?<!\wc)an't\b")  # won't, can't as whole words
_NT = re.compile(r"n't\b")
_SPACES = re.compile(r"\s{2,}|[^\S ]")  # whitespace other than one plain space
_TOKENS = re.compile(r"\w+|[^\w\s]")
# "[$€£]\s?\d|\d\s?(?:[$€£]|euros?\b|dollars?\b|\$)" and "\b[A-ZÀ-Ý]{4,}\b", with the first
# character first (the same matches, found 2-3x faster).
_MONEY = re.compile(r"[$€£\d](?:(?<=[$€£])\s?\d|(?<=\d)\s?(?:[$€£]|euros?\b|dollars?\b|\$))")
_SHOUT = re.compile(r"[A-ZÀ-Ý](?<=\b[A-ZÀ-Ý])[A-ZÀ-Ý]{3,}\b")

_NEGATORS = frozenset(
    "pas jamais rien aucun aucune guère sans ni pantoute not no never nothing none nobody "
    "without nor cannot".split()
)
# Words skipped inside a negation scope: "pas très bon" negates "bon".
_NEG_FILLERS = frozenset(
    "très vraiment du de des le la les un une tout si trop super assez encore vos votre mon ma "
    "mes ton ta ce cette so very really that the a an at all too quite even any my your this "
    "their".split()
)
_NEG_SCOPE = 4
_FR_CLITICS = frozenset("y en me te se le la les lui leur l m t s nous vous".split())

_EMOJI_CLASSES: dict[str, str] = {
    **dict.fromkeys("😡😠🤬👎😤💩😞😢😭🙄😒😩😫😖😣😓😔😕☹🙁💔🤮🤢😑😐😬🙃", "neg"),
    **dict.fromkeys(
        "😍❤💕💖💗💘💙💚💛💜🧡🖤🤍😀😃😄😁😊🙂😉🥰😘👍👌👏🙌🔥💯✨🎉🥳😎⭐🤩💪🤤😋", "pos"
    ),
    **dict.fromkeys("😂🤣😆😅😹", "laugh"),
    **dict.fromkeys("🤔❓❔", "doubt"),
}


# Every character `is_emoji` accepts, found in one C pass: the two ranges plus the few classed
# emoji outside them (listing every classed emoji in the set makes the scan ~20x slower).
_EMOJI_CANDIDATES = re.compile(
    "[\U0001F300-\U0001FAFF\u2600-\u27BF"
    + "".join(
        sorted(
            ch
            for ch in _EMOJI_CLASSES
            if not 0x2600 <= ord(ch) <= 0x27BF and not 0x1F300 <= ord(ch) <= 0x1FAFF
        )
    )
    + "]"
)


def fold_accents(text: str) -> str:
    """ "Problème à l'hôtel" -> "probleme a l'hotel" (œ/æ expanded, other marks dropped)."""
    text = text.replace("œ", "oe").replace("æ", "ae")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def normalise(text: str) -> str:
    """Lowercase text with placeholders (``__url__``, ``__user__``, ``__num__``) and expanded
    English negative contractions; letters repeated 3+ times are cut to two ("nuuuul" -> "nuul")."""
    text = _APOSTROPHES.sub("'", text)
    text = _URL.sub(" __url__ ", text)
    text = _HANDLE.sub(" __user__ ", text)
    text = _LONG_NUMBER.sub(" __num__ ", text)
    text = text.lower().replace("#", " ")
    text = _CONTRACTION.sub(_expand_contraction, text)
    text = _NT.sub(" not", text)
    text = _REPEATS.sub(_cut_elongation, text)
    return _SPACES.sub(" ", text).strip()


def _expand_contraction(match: re.Match[str]) -> str:
    return "will not" if match.group()[0] == "w" else "can not"


def _cut_elongation(match: re.Match[str]) -> str:
    """A letter or sign repeated 3+ times is cut to two; digits are left alone."""
    repeated = match.group(1)
    return match.group() if repeated.isdecimal() else repeated * 2  # isdecimal() is regex \d


def is_emoji(ch: str) -> bool:
    code = ord(ch)
    return 0x1F300 <= code <= 0x1FAFF or 0x2600 <= code <= 0x27BF or ch in _EMOJI_CLASSES


def negation_tokens(normalised: str) -> list[str]:
    """``neg_<word>`` for the first content words after a negator, stopping at punctuation."""
    tokens = _TOKENS.findall(normalised)
    out: list[str] = []
    for i, token in enumerate(tokens):
        negated = token in _NEGATORS or (
            token == "plus" and any(t in ("ne", "n") for t in tokens[max(0, i - 3) : i])
        )
        if not negated:
            continue
        # French "ne VERBE pas": the verb between ne/n' and the negator is negated too.
        window = tokens[max(0, i - 4) : i]
        if "ne" in window or "n" in window:
            start = max(j for j, t in enumerate(window) if t in ("ne", "n")) + 1
            out.extend(
                f"neg_{t}" for t in window[start:] if t[0].isalnum() and t not in _FR_CLITICS
            )
        taken = 0
        for follower in tokens[i + 1 : i + 1 + _NEG_SCOPE]:
            if not (follower[0].isalnum() or follower[0] == "_") or follower in _NEGATORS:
                break
            if follower in _NEG_FILLERS:
                continue
            out.append(f"neg_{follower}")
            taken += 1
            if taken == 2:
                break
    return out


def cue_tokens(
    text: str, context: Context, *, normalised: str | None = None, language: str | None = None
) -> list[str]:
    """Context, language, emoji, negation and punctuation cues as space-free tokens
    (`normalised` and `language`, when the caller has them already, must be ``normalise(text)``
    and ``detect_language(text)``)."""
    cues: list[str] = []
    if context.platform:
        cues.append(f"__platform_{context.platform.strip().lower()}__")
    if context.kind:
        cues.append(f"__kind_{context.kind.strip().lower()}__")
    if context.parent_is_ad:
        cues.append("__parent_ad__")
        if context.kind.strip().lower() == "comment":
            cues.append("__ad_comment__")
    cues.append(f"__lang_{language or detect_language(text)}__")
    for ch in _EMOJI_CANDIDATES.findall(text):
        if is_emoji(ch):
            cues.append(f"emoji:{ch}")
            cues.append(f"__emoji_{_EMOJI_CLASSES.get(ch, 'other')}__")
    if "!!" in text:
        cues.append("__exclaims__")
    if "?" in text:
        cues.append("__question__")
    if _SHOUT.search(text):
        cues.append("__shout__")
    if _MONEY.search(text):
        cues.append("__money__")
    if normalised is None:
        normalised = normalise(text)
    n_words = len(normalised.split())
    if n_words <= 3:
        cues.append("__short__")
    cues.extend(negation_tokens(normalised))
    return cues


class TextView(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """Turns `(text, Context)` documents into the strings one vectorizer reads."""

    def __init__(self, view: str = "word") -> None:
        self.view = view

    def fit(self, docs: Sequence[Doc], y: Any = None) -> TextView:
        return self

    def transform(self, docs: Sequence[Doc]) -> list[str]:
        if self.view == "word":
            return [normalise(text) for text, _ in docs]
        if self.view == "char":
            return [fold_accents(normalise(text)) for text, _ in docs]
        if self.view == "cues":
            return [" ".join(cue_tokens(text, context)) for text, context in docs]
        raise ValueError(f"unknown view {self.view!r}")


VIEWS: tuple[str, ...] = ("word", "char", "cues")


def build_features(weights: dict[str, float] | None = None) -> FeatureUnion:
    """The feature union: one TF-IDF per view, named by `VIEWS` in that order."""
    word = TfidfVectorizer(
        ngram_range=(1, 2),
        token_pattern=r"(?u)\b\w\w+\b",
        lowercase=False,
        sublinear_tf=True,
        dtype=np.float64,
    )
    char = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(2, 5),
        lowercase=False,
        sublinear_tf=True,
        min_df=2,
        dtype=np.float64,
    )
    cues = TfidfVectorizer(
        token_pattern=r"\S+",
        lowercase=False,
        use_idf=False,
        binary=True,
        norm=None,
        dtype=np.float64,
    )
    parts = {"word": word, "char": char, "cues": cues}
    return FeatureUnion(
        [(name, Pipeline([("view", TextView(name)), ("tfidf", parts[name])])) for name in VIEWS],
        transformer_weights=weights or {"word": 1.0, "char": 1.0, "cues": 0.25},
    )


def as_docs(texts: Sequence[str], contexts: Sequence[Context] | None) -> list[Doc]:
    if contexts is None:
        return [(text, Context()) for text in texts]
    if len(contexts) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(contexts)} contexts")
    return list(zip(texts, contexts, strict=True))
