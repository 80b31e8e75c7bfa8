from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.reviews import FEATURE_COLUMNS, FEATURE_DTYPES, build_features
from monitoring.reference import (
    ProfileError,
    build_reference_profile,
    load_profile,
    save_profile,
)
from synthetic.reviews import generate_reviews


@pytest.fixture(scope="module")
def raw_and_features() -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = generate_reviews(300, seed=5)
    return raw, build_features(raw)


def test_profile_has_contract_columns_and_dtypes(raw_and_features) -> None:
    raw, features = raw_and_features
    scores = np.linspace(0.0, 1.0, len(raw))
    profile = build_reference_profile(features, scores, raw["label"], sample_size=1000)
    assert list(profile.columns) == [*FEATURE_COLUMNS, "score", "label", "prediction"]
    assert len(profile) == len(raw)
    for name in FEATURE_COLUMNS:
        assert str(profile[name].dtype) == FEATURE_DTYPES[name]
    assert (profile["prediction"] == (profile["score"] >= 0.5).astype(int)).all()
    assert profile["label"].tolist() == raw["label"].tolist()


def test_profile_is_a_seeded_sample_of_rows(raw_and_features) -> None:
    raw, features = raw_and_features
    scores = np.linspace(0.0, 1.0, len(raw))
    first = build_reference_profile(features, scores, sample_size=100, seed=1)
    again = build_reference_profile(features, scores, sample_size=100, seed=1)
    other = build_reference_profile(features, scores, sample_size=100, seed=2)
    assert len(first) == 100
    assert "label" not in first.columns
    pd.testing.assert_frame_equal(first, again)
    assert not first["score"].equals(other["score"])


def test_sampled_rows_keep_their_own_score(raw_and_features) -> None:
    _, features = raw_and_features
    scores = features["n_chars"] / features["n_chars"].max()
    profile = build_reference_profile(features, scores, sample_size=50, seed=3)
    expected = profile["n_chars"] / features["n_chars"].max()
    np.testing.assert_allclose(profile["score"], expected)


def test_parquet_round_trip(raw_and_features, tmp_path: Path) -> None:
    raw, features = raw_and_features
    profile = build_reference_profile(features, np.full(len(raw), 0.7), raw["label"])
    path = save_profile(profile, tmp_path / "nested" / "profile.parquet")
    pd.testing.assert_frame_equal(load_profile(path), profile)


def test_invalid_inputs_raise_with_the_problem_named(raw_and_features, tmp_path: Path) -> None:
    raw, features = raw_and_features
    with pytest.raises(ProfileError, match="n_chars"):
        build_reference_profile(features.drop(columns=["n_chars"]), np.zeros(len(raw)))
    with pytest.raises(ProfileError, match="scores has 3 values"):
        build_reference_profile(features, np.zeros(3))
    with pytest.raises(ProfileError, match="probabilities"):
        build_reference_profile(features, np.full(len(raw), 1.5))
    with pytest.raises(FileNotFoundError, match=r"absent\.parquet"):
        load_profile(tmp_path / "absent.parquet")
    features.drop(columns=["text_clean"]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ProfileError, match="text_clean"):
        load_profile(tmp_path / "bad.parquet")
