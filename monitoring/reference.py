"""The champion's reference profile: what "normal" traffic looked like at training time.

A profile is a sample of the training rows' features with the model's scores
(and labels when known). The daily drift check compares logged predictions
against it, so the profile must hold the same columns serving logs: the use
case's `FEATURE_COLUMNS` (features/<use case>.py) + `score` (+ `label`) +
`prediction`.

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

from core.usecases import get_use_case

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
    use_case: str | None = None,
) -> pd.DataFrame:
    """A seeded random sample (at most `sample_size` rows) of features + score (+ label).

    `prediction` is `score >= decision_threshold`, the label serving would return.
    The feature columns are `use_case`'s (default reviews).
    """
    uc = get_use_case(use_case)
    FEATURE_COLUMNS, FEATURE_DTYPES = uc.features.FEATURE_COLUMNS, uc.features.FEATURE_DTYPES
    missing = [c for c in FEATURE_COLUMNS if c not in features.columns]
    if missing:
        raise ProfileError(
            f"features lack column(s) {missing}; build them with {uc.feature_module}.build_features"
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


def validate_profile(
    profile: pd.DataFrame, source: str = "profile", use_case: str | None = None
) -> pd.DataFrame:
    """Raise ProfileError naming what is missing; return the frame unchanged otherwise.

    Without a use case the profile must hold the score and the feature columns of some
    registered use case (a profile does not name its use case).
    """
    candidates = [use_case] if use_case else list(_registered())
    for name in candidates:
        if all(c in profile.columns for c in (*get_use_case(name).features.FEATURE_COLUMNS, SCORE)):
            return profile
    first = [*get_use_case(candidates[0]).features.FEATURE_COLUMNS, SCORE]
    missing = [c for c in first if c not in profile.columns]
    raise ProfileError(f"{source} lacks column(s) {missing}; expected {first}")


def _registered() -> list[str]:
    from core.usecases import use_case_names

    return use_case_names()


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
