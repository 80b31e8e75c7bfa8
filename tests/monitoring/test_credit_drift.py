"""Credit drift scenario on the real UCI clients: a segment unlike the training population.

The reference is a random 10,000 clients (the training population); the model
is a calibrated logistic regression of the credit zoo fitted on it. Days of
300 scored clients are then compared with the reference by the monitoring
layer's PSI (`monitoring.psi`) on every credit feature and on the predicted
default probability:

- thresholds are calibrated on twenty in-distribution days drawn from a pool
  of clients that no scored day uses (per column: the largest PSI seen there,
  times 1.5);
- a day is `drift` when both checks fire (feature PSI on at least a quarter
  of the features, PSI of the predicted probability), as the platform's drift
  check votes;
- five in-distribution days from the remaining clients must fire neither check;
- two days of young clients (age <= 28) using at least 80 % of their limit on
  average, a segment that is 5 % of the population, must be.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from contracts.sources import load_sources, source_columns
from features.credit import FEATURE_COLUMNS, RAW_COLUMNS, build_features
from monitoring.psi import psi
from tests.helpers import real_dataset
from training.zoo import build_pipeline, layout_for, search_spaces_for

DAY = 300
N_REFERENCE = 10_000
N_CALIBRATION = 8_000
CALIBRATION_DAYS = 20
MARGIN = 1.5
MIN_THRESHOLD = 0.05
DRIFTED_SHARE = 0.25


@pytest.fixture(scope="module")
def clients() -> tuple[pd.DataFrame, np.ndarray]:
    entry = load_sources()["credit"]
    frame = pd.read_csv(real_dataset(entry["file"]))
    mapping = source_columns(entry, RAW_COLUMNS)
    raw = frame.rename(columns={file: canonical for canonical, file in mapping.items()})
    return build_features(raw), frame[entry["label_column"]].to_numpy()


def _scores(model, features: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(features)[:, 1]


def _day_psi(reference: pd.DataFrame, day: pd.DataFrame) -> dict[str, float]:
    return {c: psi(reference[c].to_numpy(), day[c].to_numpy()) for c in reference.columns}


def _decide(day_psi: dict[str, float], thresholds: dict[str, float]) -> dict[str, bool]:
    features = [c for c in FEATURE_COLUMNS if day_psi[c] > thresholds[c]]
    return {
        "feature_psi": len(features) / len(FEATURE_COLUMNS) >= DRIFTED_SHARE,
        "prediction_psi": day_psi["score"] > thresholds["score"],
    }


def test_a_young_high_utilisation_segment_drifts_and_ordinary_days_do_not(clients) -> None:
    features, labels = clients
    order = np.random.default_rng(0).permutation(len(features))
    ref_idx = order[:N_REFERENCE]
    calibration_idx = order[N_REFERENCE : N_REFERENCE + N_CALIBRATION]
    scored_idx = order[N_REFERENCE + N_CALIBRATION :]

    model = build_pipeline(
        "logreg", None, spaces=search_spaces_for("credit"), layout=layout_for("credit")
    ).fit(features.iloc[ref_idx], labels[ref_idx])

    def profile(idx: np.ndarray) -> pd.DataFrame:
        part = features.iloc[idx].reset_index(drop=True)
        return part.assign(score=_scores(model, part))

    reference = profile(ref_idx)
    rng = np.random.default_rng(1)
    calibration = [
        _day_psi(reference, profile(rng.choice(calibration_idx, DAY, replace=False)))
        for _ in range(CALIBRATION_DAYS)
    ]
    thresholds = {
        c: max(MIN_THRESHOLD, MARGIN * max(day[c] for day in calibration))
        for c in reference.columns
    }

    scored = features.iloc[scored_idx]
    segment = scored_idx[((scored["age_years"] <= 28) & (scored["util_mean"] >= 0.8)).to_numpy()]
    ordinary = np.setdiff1d(scored_idx, segment)
    assert len(segment) >= 2 * DAY, f"only {len(segment)} segment clients to score"
    segment = np.random.default_rng(2).permutation(segment)
    ordinary = np.random.default_rng(3).permutation(ordinary)

    for k in range(5):
        day = profile(ordinary[k * DAY : (k + 1) * DAY])
        decision = _decide(_day_psi(reference, day), thresholds)
        assert not any(decision.values()), f"in-distribution day {k} fired: {decision}"
    for k in range(2):
        day = profile(segment[k * DAY : (k + 1) * DAY])
        day_psi = _day_psi(reference, day)
        decision = _decide(day_psi, thresholds)
        over = sorted(c for c in FEATURE_COLUMNS if day_psi[c] > thresholds[c])
        assert all(decision.values()), f"segment day {k} missed: {decision} {over}"
        # The shift is the one built in: younger clients, fuller cards, riskier scores.
        assert day["age_years"].mean() < reference["age_years"].mean() - 5
        assert day["util_mean"].mean() > reference["util_mean"].mean() + 0.4
        assert day["score"].mean() > reference["score"].mean()
