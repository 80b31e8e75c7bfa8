"""Offline text descriptors that Evidently does not ship without downloads.

Evidently's `OOVWordsPercentage` and `Sentiment` descriptors fetch NLTK corpora
(words, wordnet, vader_lexicon) at run time, which a worker without internet
cannot do. These two stand in for them with nothing but the reference data and
a small lexicon kept as YAML:

- `oov_share`: share of a review's tokens that never occur in (half of) the
  reference sample. The vocabulary is cross-fitted: the reference is split in
  two halves A and B, rows of A are measured against B's vocabulary and vice
  versa, and current rows against A's. Every row is thus measured against a
  vocabulary of the same size that did not see it, so reference and current
  values are comparable (an in-sample vocabulary would give the reference an
  OOV share of zero and flag every day).
- `lexicon_polarity`: (positive - negative lexicon hits) / (hits), in [-1, 1],
  0 when the review has no lexicon word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from features.reviews import TEXT_CLEAN
from monitoring.config import load_lexicon

OOV_SHARE = "oov_share"
LEXICON_POLARITY = "lexicon_polarity"
CUSTOM_DESCRIPTORS: tuple[str, ...] = (OOV_SHARE, LEXICON_POLARITY)

_TOKEN = re.compile(r"\w+(?:'\w+)?")


def _tokens(text: object) -> list[str]:
    return _TOKEN.findall(text) if isinstance(text, str) else []


def _vocabulary(token_lists: Iterable[list[str]]) -> set[str]:
    vocab: set[str] = set()
    for tokens in token_lists:
        vocab.update(tokens)
    return vocab


def _oov(token_lists: list[list[str]], vocab: set[str]) -> np.ndarray:
    known = vocab.__contains__
    return np.array(
        [1.0 - sum(map(known, tokens)) / len(tokens) if tokens else 0.0 for tokens in token_lists],
        dtype="float64",
    )


def _polarity(
    token_lists: list[list[str]], positive: frozenset[str], negative: frozenset[str]
) -> np.ndarray:
    out = np.zeros(len(token_lists), dtype="float64")
    is_pos, is_neg = positive.__contains__, negative.__contains__
    for i, tokens in enumerate(token_lists):
        pos = sum(map(is_pos, tokens))
        neg = sum(map(is_neg, tokens))
        if pos + neg:
            out[i] = (pos - neg) / (pos + neg)
    return out


def add_text_descriptors(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    seed: int = 0,
    lexicon: dict[str, frozenset[str]] | None = None,
    column: str = TEXT_CLEAN,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Copies of both frames with `oov_share` and `lexicon_polarity` columns added.

    `column` is the cleaned text they are computed on (a text use case's text feature).
    """
    words = lexicon if lexicon is not None else load_lexicon()
    ref_tokens = [_tokens(t) for t in reference[column].tolist()]
    cur_tokens = [_tokens(t) for t in current[column].tolist()]

    in_a = np.zeros(len(ref_tokens), dtype=bool)
    order = np.random.default_rng(seed).permutation(len(ref_tokens))
    in_a[order[: len(ref_tokens) // 2]] = True
    vocab_a = _vocabulary(t for t, a in zip(ref_tokens, in_a, strict=True) if a)
    vocab_b = _vocabulary(t for t, a in zip(ref_tokens, in_a, strict=True) if not a)

    ref_oov = np.empty(len(ref_tokens), dtype="float64")
    idx_a, idx_b = np.flatnonzero(in_a), np.flatnonzero(~in_a)
    ref_oov[idx_a] = _oov([ref_tokens[i] for i in idx_a], vocab_b)
    ref_oov[idx_b] = _oov([ref_tokens[i] for i in idx_b], vocab_a)
    ref_out = reference.copy()
    cur_out = current.copy()
    ref_out[OOV_SHARE] = ref_oov
    cur_out[OOV_SHARE] = _oov(cur_tokens, vocab_a)
    ref_out[LEXICON_POLARITY] = _polarity(ref_tokens, words["positive"], words["negative"])
    cur_out[LEXICON_POLARITY] = _polarity(cur_tokens, words["positive"], words["negative"])
    return ref_out, cur_out
