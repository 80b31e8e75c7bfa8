"""Review-sentiment features: the only place they are defined.

`build_features` runs unchanged inside Spark (`mapInPandas`, training) and
inside the FastAPI server (online), so both see the same numbers for the same
text. It is pure Python + pandas: no Spark, web, MLflow or Airflow imports.

Two kinds of output:
- `text_clean`: the text a vectoriser should see. HTML entities decoded, tags
  dropped, mis-decoded Windows-1252 punctuation repaired, Unicode NFKC,
  control characters removed, lower-cased, whitespace collapsed. Negations and
  apostrophes are kept ("don't" stays "don't"), because they carry sentiment.
- raw-text signals, measured *before* cleaning (shouting, punctuation,
  markup), where cleaning would erase them.

Stateful transforms (TF-IDF vocabulary, scaling) belong to the model pipeline,
not here.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

RAW_TEXT = "text"
RAW_COLUMNS: tuple[str, ...] = (RAW_TEXT,)
TEXT_CLEAN = "text_clean"
NUMERIC_FEATURES: tuple[str, ...] = (
    "n_chars",
    "n_words",
    "upper_ratio",
    "n_exclaim",
    "n_question",
    "n_html_tags",
    "n_negations",
    "avg_word_len",
    "elongated_words",
)
FEATURE_COLUMNS: tuple[str, ...] = (TEXT_CLEAN, *NUMERIC_FEATURES)

_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]{0,200})?/?>")
_WORD = re.compile(r"\S+")
_SPACE = re.compile(r"\s+")
_ELONGATED = re.compile(r"([a-z])\1\1")
_NEGATION = re.compile(
    r"\b(?:not|no|never|nothing|nobody|none|neither|nor|nowhere|cannot|without)\b|n't\b"
)

# Text from old Windows tools decoded as Latin-1 carries C1 controls where
# cp1252 had dashes, quotes and ellipses; map them back instead of deleting.
_C1_REPAIR = {
    code: bytes([code]).decode("cp1252", errors="ignore") or " " for code in range(0x80, 0xA0)
}
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})


def _as_text(value: Any) -> str:
    """None, NaN and non-strings become text; nothing raises."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if value is pd.NA:
        return ""
    return value if isinstance(value, str) else str(value)


def _drop_controls(text: str) -> str:
    # Category C* (controls, format chars, surrogates, unassigned) but keep
    # whitespace controls, which collapse to a single space later.
    return "".join(ch if ch.isspace() or unicodedata.category(ch)[0] != "C" else " " for ch in text)


def clean_text(value: Any) -> str:
    """Normalise one review for a bag-of-words model."""
    text = _as_text(value)
    if not text:
        return ""
    text = text.translate(_C1_REPAIR)
    text = html.unescape(text)
    text = _TAG.sub(" ", text)
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(_QUOTES)
    text = _drop_controls(text) if not text.isascii() else _ASCII_CONTROL.sub(" ", text)
    text = text.lower()
    return _SPACE.sub(" ", text).strip()


def _signals(raw: str, clean: str) -> tuple[int, int, float, int, int, int, int, float, int]:
    n_chars = len(raw)
    words = _WORD.findall(raw)
    n_words = len(words)
    letters = sum(1 for ch in raw if ch.isalpha())
    upper = sum(1 for ch in raw if ch.isupper())
    upper_ratio = round(upper / letters, 6) if letters else 0.0
    clean_words = clean.split()
    avg_word_len = (
        round(sum(len(w) for w in clean_words) / len(clean_words), 6) if clean_words else 0.0
    )
    return (
        n_chars,
        n_words,
        upper_ratio,
        raw.count("!"),
        raw.count("?"),
        len(_TAG.findall(raw)),
        len(_NEGATION.findall(clean)),
        avg_word_len,
        len(_ELONGATED.findall(clean)),
    )


def featurize_texts(texts: Iterable[Any]) -> dict[str, list[Any]]:
    """Column-wise features for an iterable of raw texts (the shared core)."""
    out: dict[str, list[Any]] = {name: [] for name in FEATURE_COLUMNS}
    numeric_lists = [out[name] for name in NUMERIC_FEATURES]
    clean_list = out[TEXT_CLEAN]
    for value in texts:
        raw = _as_text(value)
        clean = clean_text(raw)
        clean_list.append(clean)
        for target, item in zip(numeric_lists, _signals(raw, clean), strict=True):
            target.append(item)
    return out


FEATURE_DTYPES: dict[str, str] = {
    TEXT_CLEAN: "object",
    "n_chars": "int64",
    "n_words": "int64",
    "upper_ratio": "float64",
    "n_exclaim": "int64",
    "n_question": "int64",
    "n_html_tags": "int64",
    "n_negations": "int64",
    "avg_word_len": "float64",
    "elongated_words": "int64",
}


def build_features(df: pd.DataFrame, text_col: str = RAW_TEXT) -> pd.DataFrame:
    """Feature frame for `df[text_col]`, same index, dtypes from FEATURE_DTYPES.

    Deterministic and total: empty strings, None/NaN, emoji, control
    characters and very long texts all produce a row.
    """
    if text_col not in df.columns:
        raise KeyError(f"build_features needs a {text_col!r} column; got {list(df.columns)}")
    columns = featurize_texts(df[text_col].tolist())
    data = {name: np.array(values, dtype=FEATURE_DTYPES[name]) for name, values in columns.items()}
    return pd.DataFrame(data, index=df.index, copy=False)
