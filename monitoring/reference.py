"""The champion's reference profile: what "normal" traffic looked like at training time.

A profile is a sample of the training rows' features with the model's scores
(and labels when known). The daily drift check compares logged predictions
against it, so the profile must hold the same columns serving logs:
`features.reviews.FEATURE_COLUMNS` + `score` (+ `label`) + `prediction`.

The scores should be out-of-sample (validation split or out-of-fold
predictions): a model scores its own training rows more confidently than new
traffic, and an in-sample profile makes every ordinary day look like
prediction drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from features.reviews import FEATURE_COLUMNS, FEATURE_DTYPES

SCORE = "score"
LABEL = "label"
PREDICTION = "prediction"


class ProfileError(ValueError):
    """A reference profile (or its inputs) does not have the expected shape."""


def _as_1d(values: Sequence[float] | np.ndarray | pd.Series, name: str, n: int) -> np.ndarray:
    array = np.asarray(values).ravel()
    if array.size != n:
        raise ProfileError(f"{name} has {array.size} values but features have {n} rows")
    return array


def build_reference_profile(
    features: pd.DataFrame,
    scores: Sequence[float] | np.ndarray | pd.Series,
    labels: Sequence[int] | np.ndarray | pd.Series | None = None,
    *,
    sample_size: int = 5000,
    seed: int = 0,
    decision_threshold: float = 0.5,
) -> pd.DataFrame:
    """A seeded random sample (at most `sample_size` rows) of features + score (+ label).

    `prediction` is `score >= decision_threshold`, the label serving would return.
    """
    missing = [c for c in FEATURE_COLUMNS if c not in features.columns]
    if missing:
        raise ProfileError(
            f"features lack column(s) {missing}; build them with features.reviews.build_features"
        )
    if sample_size < 1:
        raise ProfileError(f"sample_size must be >= 1, got {sample_size}")
    n = len(features)
    if n == 0:
        raise ProfileError("cannot build a reference profile from zero rows")
    score = _as_1d(scores, "scores", n).astype("float64")
    if not np.all(np.isfinite(score)) or score.min() < 0.0 or score.max() > 1.0:
        raise ProfileError("scores must be finite probabilities within [0, 1]")

    profile = features.loc[:, list(FEATURE_COLUMNS)].reset_index(drop=True).copy()
    profile[SCORE] = score
    if labels is not None:
        label = pd.array(_as_1d(labels, "labels", n), dtype="Int64")
        profile[LABEL] = label
    profile[PREDICTION] = (score >= decision_threshold).astype("int64")

    if n > sample_size:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(n, size=sample_size, replace=False))
        profile = profile.iloc[keep].reset_index(drop=True)
    return profile.astype({name: FEATURE_DTYPES[name] for name in FEATURE_COLUMNS})


def validate_profile(profile: pd.DataFrame, source: str = "profile") -> pd.DataFrame:
    """Raise ProfileError naming what is missing; return the frame unchanged otherwise."""
    missing = [c for c in (*FEATURE_COLUMNS, SCORE) if c not in profile.columns]
    if missing:
        raise ProfileError(
            f"{source} lacks column(s) {missing}; expected {[*FEATURE_COLUMNS, SCORE]}"
        )
    return profile


def save_profile(profile: pd.DataFrame, path: str | Path) -> Path:
    """Write a profile as Parquet (creating parent folders); returns the path."""
    validate_profile(profile)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    profile.to_parquet(target, index=False)
    return target


def load_profile(path: str | Path) -> pd.DataFrame:
    """Read a profile written by `save_profile` and check its columns."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"reference profile not found: {source}")
    return validate_profile(pd.read_parquet(source), source=str(source))
