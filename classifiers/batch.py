"""Batched feature extraction: a chunk of texts in a few regex passes instead of a few dozen
Python calls per text.

The texts of a chunk are joined with ``SEP`` (a space, NUL, a space) and every step that
``fast.FastScorer.encode`` runs per text runs once on the joined string: normalisation, the
word and char tokens, the language guess, the emoji, punctuation, money and negation cues. None
of the patterns involved can match NUL or run across the spaces around it, so each match falls
inside one text; a match's text is found from its position (``np.searchsorted`` on the texts'
start offsets) or by counting the NUL tokens before it. Per-word work (a word's char n-gram
columns, its language votes) is remembered per distinct word. The result is the same term
occurrences as the per-text path, turned into the same matrices; a test holds the two to the
same labels and probabilities. A chunk in which some text contains NUL itself goes through the
per-text path.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from itertools import chain, repeat
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from classifiers.domain import Context
from classifiers.features import (
    _EMOJI_CANDIDATES,
    _EMOJI_CLASSES,
    _MONEY,
    _NEGATORS,
    _SHOUT,
    is_emoji,
    negation_tokens,
    normalise,
)
from classifiers.language import (
    _EN_CONTRACTION,
    _EN_WORDS,
    _FR_ACCENTS,
    _FR_ELISION,
    _FR_REGIONAL,
    _FR_WORDS,
    _NOISE,
    _OTHER_WORDS,
    _WORD,
)

SEP_CHAR = "\x00"
SEP = f" {SEP_CHAR} "
WORD_CACHE_MAX = 200_000  # distinct words remembered per cache; emptied when full
_LANGUAGES = np.array(["fr", "en", "other"])
WORD_PATTERN = r"\b\w\w+\b"  # the word view's tokens (``features.build_features``)
# Words after which `negation_tokens` may find something (all are tokens of WORD_PATTERN).
_NEG_WORDS = frozenset(_NEGATORS | {"plus"})
_SEP_VOTE = 16  # the language vote code of NUL, apart from every word's (0-15)
_LANG_WORDS = re.compile(f"{_WORD.pattern}|{SEP_CHAR}")
# ``language._FR_ELISION`` rewritten so that each alternative starts with a literal (the engine
# then skips ahead to it): the same matches, about 3x faster on a batch.
_ELISION_WORDS = "j l d c n qu s m t jusqu lorsqu puisqu".split()
_FR_ELISION_FAST = re.compile(
    "(?:" + "|".join(f"{w}(?<!\\w{w})" for w in _ELISION_WORDS) + ")'"
    + _FR_ELISION.pattern.rsplit("'", 1)[1]
)


def _strip_unicode_flag(pattern: str) -> str:
    return pattern[4:] if pattern.startswith("(?u)") else pattern  # str patterns are Unicode


def _starts(pieces: list[str]) -> np.ndarray:
    """Offset of each piece in ``SEP_CHAR.join(pieces)``."""
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)) + 1
    return np.concatenate([[0], np.cumsum(lengths)[:-1]])


def _matches(pattern: re.Pattern[str], joined: str, starts: np.ndarray) -> np.ndarray:
    """The text index of every match of `pattern` in `joined` (texts starting at `starts`)."""
    positions = np.fromiter((m.start() for m in pattern.finditer(joined)), dtype=np.int64)
    return np.searchsorted(starts, positions, side="right") - 1


def _language_votes(word: str) -> int:
    """One word's votes, as ``language.detect_language`` counts them, packed in one int:
    ``fr * 4 + en * 2 + other`` (fr 0-3, en and other 0-1)."""
    base = word.split("'")[-1] if "'" in word and not word.endswith("'") else word
    fr = en = other = 0
    if word in _FR_REGIONAL or base in _FR_REGIONAL:
        fr += 2
    elif base in _FR_WORDS:
        fr += 1
    elif word in _EN_WORDS:
        en += 1
    elif word in _OTHER_WORDS:
        other += 1
    if _FR_ACCENTS.search(word):
        fr += 1
    return fr * 4 + en * 2 + other


def count_pairs(rows: np.ndarray, columns: np.ndarray, n_rows: int, width: int) -> csr_matrix:
    """(row, column) occurrences -> a (n_rows x width) matrix of their counts, sorted."""
    dtype = np.int32 if n_rows * width < 2**31 else np.int64  # int32 sorts about 2x faster
    keys = np.sort(rows.astype(dtype) * dtype(width) + columns.astype(dtype))
    first = np.empty(len(keys), dtype=bool)
    first[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    counts = np.diff(starts, append=len(keys)).astype(np.float64)
    entry_rows, idx = np.divmod(keys[starts].astype(np.int64), width)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(entry_rows, minlength=n_rows), out=indptr[1:])
    return csr_matrix((counts, idx, indptr), shape=(n_rows, width))


def _remember(
    cache: dict[Any, Any],
    keys: list[Any],
    compute: Callable[[Any], Any],
    limit: int,
    *,
    values: bool = True,
) -> list[Any]:
    """Fill `cache` with the missing keys (emptied first, but for NUL, when it would hold more
    than `limit`); ``[cache[k] for k in keys]``, unless ``values=False``."""
    missing = set(keys).difference(cache)
    if len(cache) + len(missing) > limit:
        sep = cache.get(SEP_CHAR)
        cache.clear()
        if sep is not None:
            cache[SEP_CHAR] = sep
        missing = set(keys).difference(cache)
    for key in missing:
        cache[key] = compute(key)
    return list(map(cache.__getitem__, keys)) if values else []


class _ColumnTable:
    """word -> its char view columns, each word's columns stored once in one growing array, so
    that a batch's columns are gathered with a few numpy calls (emptied when it holds
    ``WORD_CACHE_MAX`` words)."""

    def __init__(self, compute: Callable[[str], tuple[int, ...]], limit: int) -> None:
        self._compute = compute
        self._limit = limit
        self.clear()

    def clear(self) -> None:
        self._ids: dict[str, int] = {SEP_CHAR: 0}  # NUL: no columns
        self._starts = np.zeros(1024, dtype=np.int64)
        self._lengths = np.zeros(1024, dtype=np.int64)
        self._columns = np.empty(1 << 16, dtype=np.int32)
        self._used = 0

    def counts(self, words: list[str], width: int, n_texts: int) -> tuple[csr_matrix, np.ndarray]:
        """Per text (texts separated by NUL words): how often each column occurs, as the
        product (texts x words) @ (words x columns), which adds up repeats without sorting;
        and the number of words of each text."""
        missing = set(words).difference(self._ids)
        if len(self._ids) + len(missing) > self._limit:
            self.clear()
            missing = set(words).difference(self._ids)
        if missing:
            self._add(list(missing))
        ids = np.fromiter(map(self._ids.__getitem__, words), dtype=np.int64, count=len(words))
        is_sep = ids == 0
        rows = np.cumsum(is_sep)[~is_sep]
        ids = ids[~is_sep]
        per_text = np.bincount(rows, minlength=n_texts)
        indptr = np.zeros(n_texts + 1, dtype=np.int64)
        np.cumsum(per_text, out=indptr[1:])
        n_words = len(self._ids)
        texts_words = csr_matrix((np.ones(len(ids)), ids, indptr), shape=(n_texts, n_words))
        table = csr_matrix(
            (
                np.ones(self._used),
                self._columns[: self._used],
                np.append(self._starts[:n_words], self._used),
            ),
            shape=(n_words, width),
        )
        return texts_words @ table, per_text

    def _add(self, words: list[str]) -> None:
        per_word = [self._compute(word) for word in words]
        lengths = np.fromiter(map(len, per_word), dtype=np.int64, count=len(words))
        flat = np.fromiter(chain.from_iterable(per_word), dtype=np.int32, count=int(lengths.sum()))
        first, end = len(self._ids), len(self._ids) + len(words)
        if end > len(self._starts):
            size = max(end, 2 * len(self._starts))
            self._starts = np.resize(self._starts, size)
            self._lengths = np.resize(self._lengths, size)
        if self._used + len(flat) > len(self._columns):
            size = max(self._used + len(flat), 2 * len(self._columns))
            self._columns = np.resize(self._columns, size)
        self._starts[first:end] = self._used + np.cumsum(lengths) - lengths
        self._lengths[first:end] = lengths
        self._columns[self._used : self._used + len(flat)] = flat
        self._used += len(flat)
        self._ids.update(zip(words, range(first, end), strict=True))


class BatchEncoder:
    """The three views' term occurrences of many texts at once, as (row, column) pairs.

    `word_vocab`, `char_columns` (a word of the normalised text -> its char view columns, all
    folded parts together) and `cue_vocab` come from the fitted vectorizers. Raises ValueError
    for word features other than the recipe's (1-2-grams of ``\\b\\w\\w+\\b`` tokens)."""

    def __init__(
        self,
        word_vocab: dict[str, int],
        word_pattern: str,
        word_ngrams: tuple[int, int],
        char_columns: Callable[[str], tuple[int, ...]],
        char_width: int,
        cue_vocab: dict[str, int],
        cache_max: int = WORD_CACHE_MAX,
    ) -> None:
        if _strip_unicode_flag(word_pattern) != WORD_PATTERN or tuple(word_ngrams) != (1, 2):
            raise ValueError(f"batched word features are 1-2-grams of {WORD_PATTERN}")
        self._unigrams = {**word_vocab, SEP_CHAR: -2}
        # A pair of tokens "a b" is looked up as the integer a * width + b of its unigrams'
        # columns (a bigram seen in training always has both unigrams in the vocabulary).
        self._width = len(word_vocab)
        bigrams = [(*term.split(" "), column) for term, column in word_vocab.items() if " " in term]
        pairs = sorted((word_vocab[a] * self._width + word_vocab[b], col) for a, b, col in bigrams)
        self._bigram_keys = np.array([key for key, _ in pairs], dtype=np.int64)
        self._bigram_columns = np.array([column for _, column in pairs], dtype=np.int64)
        self._word_tokens = re.compile(f"{WORD_PATTERN}|{SEP_CHAR}")
        self._cue_vocab = cue_vocab
        self._cache_max = cache_max  # distinct words remembered per cache
        self._char_table = _ColumnTable(char_columns, cache_max)
        self._char_width = char_width
        self._lang_cache: dict[str, int] = {SEP_CHAR: _SEP_VOTE}
        self._context_cache: dict[tuple[str, str, bool, str], tuple[int, ...]] = {}
        self._lock = threading.Lock()  # the caches are filled and emptied as a batch goes

    def clear_cache(self) -> None:
        with self._lock:
            self._char_table.clear()
            self._lang_cache = {SEP_CHAR: _SEP_VOTE}

    @staticmethod
    def accepts(texts: Sequence[str]) -> bool:
        return not any(SEP_CHAR in text for text in texts)

    def encode(
        self, texts: Sequence[str], contexts: Sequence[Context]
    ) -> tuple[list[csr_matrix], list[str]]:
        """Per view (word, char, cues): a (texts x view columns) matrix of term counts; and
        each text's language."""
        with self._lock:
            n = len(texts)
            raw = SEP.join(texts)
            raw_starts = _starts(list(texts)) + np.arange(n) * (len(SEP) - 1)
            norm = normalise(raw)
            languages = self.languages(raw, n)
            word_pairs, negated = self._word_view(norm)
            char_counts, n_words = self._char_table.counts(norm.split(), self._char_width, n)
            cue_pairs = self._cue_view(
                texts, contexts, languages, raw, raw_starts, norm, negated, n_words
            )
            return [
                count_pairs(*word_pairs, n, self._width),
                char_counts,
                count_pairs(*cue_pairs, n, len(self._cue_vocab)),
            ], languages

    # -- views --------------------------------------------------------------------------------

    def _word_view(self, norm: str) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """The word view's (text, column) pairs, and the texts holding a negator (or "plus")."""
        tokens = self._word_tokens.findall(norm)
        count = len(tokens)
        uni = np.fromiter(map(self._unigrams.get, tokens, repeat(-1)), dtype=np.int64, count=count)
        text_of = np.cumsum(uni == -2)
        known = uni >= 0
        first, second = uni[:-1], uni[1:]
        both = np.flatnonzero(known[:-1] & known[1:])  # a pair across texts holds NUL: -2
        keys = first[both] * self._width + second[both]
        last = max(len(self._bigram_keys) - 1, 0)
        found = np.searchsorted(self._bigram_keys, keys).clip(max=last)
        if len(self._bigram_keys):
            hit = self._bigram_keys[found] == keys
        else:
            hit = np.zeros(len(keys), dtype=bool)
        negators = np.fromiter(map(_NEG_WORDS.__contains__, tokens), dtype=bool, count=count)
        return (
            (
                np.concatenate([text_of[known], text_of[both[hit]]]),
                np.concatenate([uni[known], self._bigram_columns[found[hit]]]),
            ),
            np.unique(text_of[negators]),
        )

    def _cue_view(
        self,
        texts: Sequence[str],
        contexts: Sequence[Context],
        languages: list[str],
        raw: str,
        raw_starts: np.ndarray,
        norm: str,
        negated: np.ndarray,
        n_words: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        vocab = self._cue_vocab
        rows: list[int] = []
        cols: list[int] = []

        def add(row: int, tokens: Sequence[str]) -> None:
            for token in tokens:
                column = vocab.get(token)
                if column is not None:
                    rows.append(row)
                    cols.append(column)

        keys = [
            (c.platform, c.kind, c.parent_is_ad, lang)
            for c, lang in zip(contexts, languages, strict=True)
        ]
        per_text = _remember(self._context_cache, keys, self._context_columns, self._cache_max)
        lengths = np.fromiter(map(len, per_text), dtype=np.int64, count=len(per_text))
        ctx_rows = np.repeat(np.arange(len(texts)), lengths)
        total = int(lengths.sum())
        ctx_cols = np.fromiter(chain.from_iterable(per_text), dtype=np.int64, count=total)
        for match in _EMOJI_CANDIDATES.finditer(raw):
            ch = match.group()
            if is_emoji(ch):
                row = int(np.searchsorted(raw_starts, match.start(), side="right") - 1)
                add(row, (f"emoji:{ch}", f"__emoji_{_EMOJI_CLASSES.get(ch, 'other')}__"))
        flags = (
            ("__exclaims__", [i for i, text in enumerate(texts) if "!!" in text]),
            ("__question__", [i for i, text in enumerate(texts) if "?" in text]),
            ("__shout__", _matches(_SHOUT, raw, raw_starts).tolist()),
            ("__money__", _matches(_MONEY, raw, raw_starts).tolist()),
            ("__short__", np.flatnonzero(n_words <= 3).tolist()),
        )
        for token, found in flags:
            column = vocab.get(token)
            if column is not None:
                for row in sorted(set(found)):
                    rows.append(row)
                    cols.append(column)
        if len(negated):
            pieces = norm.split(SEP_CHAR)
            for row in negated.tolist():
                add(row, negation_tokens(pieces[row].strip()))
        return (
            np.concatenate([ctx_rows, np.asarray(rows, dtype=np.int64)]),
            np.concatenate([ctx_cols, np.asarray(cols, dtype=np.int64)]),
        )

    def _context_columns(self, key: tuple[str, str, bool, str]) -> tuple[int, ...]:
        platform, kind, parent_is_ad, language = key
        tokens: list[str] = []
        if platform:
            tokens.append(f"__platform_{platform.strip().lower()}__")
        if kind:
            tokens.append(f"__kind_{kind.strip().lower()}__")
        if parent_is_ad:
            tokens.append("__parent_ad__")
            if kind.strip().lower() == "comment":
                tokens.append("__ad_comment__")
        tokens.append(f"__lang_{language}__")
        split = " ".join(tokens).split()  # the cue vectorizer's token pattern is \S+
        return tuple(j for j in map(self._cue_vocab.get, split) if j is not None)

    # -- language -----------------------------------------------------------------------------

    def languages(self, raw: str, n_texts: int) -> list[str]:
        """``detect_language`` of each text of ``raw`` (texts joined with SEP)."""
        cleaned = _NOISE.sub(" ", raw.replace("’", "'").replace("‘", "'")).lower()
        words = _LANG_WORDS.findall(cleaned)
        _remember(self._lang_cache, words, _language_votes, self._cache_max, values=False)
        cache = self._lang_cache
        votes = np.fromiter(map(cache.__getitem__, words), dtype=np.int64, count=len(words))
        is_sep = votes == _SEP_VOTE
        rows = np.cumsum(is_sep)
        counts = np.bincount(rows[~is_sep], minlength=n_texts)
        votes[is_sep] = 0
        fr, en, other = (
            np.bincount(rows, weights=part, minlength=n_texts)
            for part in (votes >> 2, (votes >> 1) & 1, votes & 1)
        )
        pieces = cleaned.split(SEP_CHAR)
        starts = _starts(pieces)
        fr += 1.5 * np.bincount(_matches(_FR_ELISION_FAST, cleaned, starts), minlength=n_texts)
        en += 1.5 * self._contractions(pieces, n_texts)
        best = np.maximum(np.maximum(fr, en), other)
        unsure = (counts == 0) | (best < 1.0) | (other == best) | (fr == en)
        choice = np.where(unsure, 2, np.where(fr > en, 0, 1))
        return _LANGUAGES[choice].tolist()

    @staticmethod
    def _contractions(pieces: list[str], n_texts: int) -> np.ndarray:
        """Matches of ``_EN_CONTRACTION`` per text; each holds an apostrophe, so only the texts
        that have one are scanned (the pattern cannot skip ahead by itself)."""
        having = [i for i, piece in enumerate(pieces) if "'" in piece]
        if not having:
            return np.zeros(n_texts)
        subset = [pieces[i] for i in having]
        found = _matches(_EN_CONTRACTION, SEP_CHAR.join(subset), _starts(subset))
        return np.bincount(np.asarray(having, dtype=np.int64)[found], minlength=n_texts)
