"""The baseline review-sentiment model: one scikit-learn pipeline over the feature frame.

The pipeline takes the frame `features.reviews.build_features` returns and
owns every stateful transform (TF-IDF vocabulary, scaler), so the single
object MLflow stores is all serving needs next to the shared feature code.
It is built from scikit-learn and numpy objects only: loading it never
imports this package.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from training.zoo import FeatureLayout, layout_for

BASELINE_CONFIG = Path(__file__).with_name("config") / "baseline.yaml"
SOLVERS = ("liblinear", "saga")


class ModelParamsError(ValueError):
    """Model parameters that the baseline pipeline does not accept."""


@lru_cache(maxsize=4)
def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ModelParamsError(f"{path} must hold a mapping of parameter names to values")
    return data


def default_params(path: Path = BASELINE_CONFIG) -> dict[str, Any]:
    """A fresh copy of the default parameters in training/config/baseline.yaml."""
    return dict(_read_yaml(path))


def resolve_params(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults overlaid with `params`; unknown keys and bad values raise ModelParamsError."""
    resolved = default_params()
    unknown = sorted(set(params or {}) - set(resolved))
    if unknown:
        raise ModelParamsError(
            f"unknown baseline parameters {unknown}; known: {sorted(resolved)} "
            f"(defaults in {BASELINE_CONFIG})"
        )
    resolved.update(params or {})
    if resolved["solver"] not in SOLVERS:
        raise ModelParamsError(f"solver must be one of {SOLVERS}, got {resolved['solver']!r}")
    if float(resolved["C"]) <= 0:
        raise ModelParamsError(f"C must be > 0, got {resolved['C']!r}")
    if int(resolved["ngram_max"]) < 1:
        raise ModelParamsError(f"ngram_max must be >= 1, got {resolved['ngram_max']!r}")
    if resolved["class_weight"] not in (None, "balanced"):
        raise ModelParamsError(
            f"class_weight must be null or 'balanced', got {resolved['class_weight']!r}"
        )
    return resolved


def _count_or_share(name: str, value: Any) -> int | float:
    # TfidfVectorizer reads an int as a document count and a float as a share of
    # documents, so the YAML type is kept as written (2 = two documents, 1.0 = all).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelParamsError(
            f"{name} must be an int (documents) or a float (share), got {value!r}"
        )
    return value


def build_baseline(
    params: dict[str, Any] | None = None, layout: FeatureLayout | None = None
) -> Pipeline:
    """Unfitted TF-IDF (+ numeric signals) -> LogisticRegression pipeline.

    Input: a DataFrame with the text use case's text column and, when
    `use_numeric`, its numeric columns (`layout`, default: the default use
    case's); other columns are ignored. Output of `predict_proba[:, 1]`: P(positive).
    """
    layout = layout or layout_for()
    if layout.text is None:
        raise ModelParamsError("the baseline is a text model; this use case has no text column")
    p = resolve_params(params)
    max_features = p["max_features"]
    tfidf = TfidfVectorizer(
        ngram_range=(1, int(p["ngram_max"])),
        min_df=_count_or_share("min_df", p["min_df"]),
        max_df=_count_or_share("max_df", p["max_df"]),
        max_features=int(max_features) if max_features is not None else None,
        sublinear_tf=bool(p["sublinear_tf"]),
        lowercase=False,  # text_clean is already lower-cased
        dtype=np.float32,
    )
    # A plain column name (not a list) hands the vectoriser a 1-D series of texts.
    branches: list[tuple[str, Any, Any]] = [("text", tfidf, layout.text)]
    if p["use_numeric"]:
        numeric = Pipeline(
            [
                ("log1p", FunctionTransformer(np.log1p, feature_names_out="one-to-one")),
                ("scale", StandardScaler()),
            ]
        )
        branches.append(("numeric", numeric, list(layout.numeric)))
    classifier = LogisticRegression(
        C=float(p["C"]),
        solver=p["solver"],
        max_iter=int(p["max_iter"]),
        class_weight=p["class_weight"],
        random_state=int(p["random_state"]),
    )
    return Pipeline(
        [("features", ColumnTransformer(branches, remainder="drop")), ("classifier", classifier)]
    )


def parse_param_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """`["C=8", "use_numeric=false"]` -> `{"C": 8, "use_numeric": False}` (values read as YAML)."""
    overrides: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ModelParamsError(f"parameter override {pair!r} must look like NAME=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides
