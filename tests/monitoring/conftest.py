"""Shared synthetic champion for the monitoring tests.

A small TF-IDF + logistic-regression model trained on synthetic movie reviews,
and its reference profile with out-of-fold scores, the way training builds it.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline

from features.reviews import TEXT_CLEAN, build_features
from monitoring.config import DriftThresholds, load_thresholds
from monitoring.reference import build_reference_profile
from synthetic.reviews import generate_reviews


def _model() -> Pipeline:
    return make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))


@pytest.fixture(scope="session")
def synthetic_champion() -> tuple[Pipeline, pd.DataFrame]:
    """(fitted model, reference profile) from 1,500 synthetic movie reviews."""
    train = generate_reviews(1500, seed=0, domain="movies")
    features = build_features(train)
    model = _model().fit(features[TEXT_CLEAN], train["label"])
    oof = cross_val_predict(
        _model(), features[TEXT_CLEAN], train["label"], cv=3, method="predict_proba"
    )[:, 1]
    profile = build_reference_profile(features, oof, train["label"], sample_size=1000, seed=0)
    return model, profile


@pytest.fixture(scope="session")
def serve_log(
    synthetic_champion: tuple[Pipeline, pd.DataFrame],
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """What serving would log for a frame of raw reviews (features + score + label)."""
    model, _ = synthetic_champion

    def log(raw: pd.DataFrame) -> pd.DataFrame:
        logged = build_features(raw)
        logged["score"] = model.predict_proba(logged[TEXT_CLEAN])[:, 1]
        logged["label"] = raw["label"].to_numpy()
        return logged

    return log


@pytest.fixture(scope="session")
def thresholds() -> DriftThresholds:
    return load_thresholds()
