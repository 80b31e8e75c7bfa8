"""Reason codes: the features with the largest positive contributions, checked against the model."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit

from contracts.sources import load_sources, source_columns
from explain.contributions import TOP_REASONS, explain, feature_contributions, top_reasons
from features.credit import RAW_COLUMNS, build_features
from synthetic.credit import generate
from training.zoo import build_pipeline, layout_for, search_spaces_for

SMALL = {
    "logreg": {},
    "hist_gbm": {"max_iter": 60},
    "forest": {"n_estimators": 40, "max_depth": 8},
    "lightgbm": {"n_estimators": 60},
}


@pytest.fixture(scope="module")
def credit_data() -> tuple[pd.DataFrame, np.ndarray]:
    entry = load_sources()["credit_synthetic"]
    mapping = source_columns(entry, RAW_COLUMNS)
    frame = generate(1500, seed=11)
    raw = frame.rename(columns={file: canonical for canonical, file in mapping.items()})
    return build_features(raw), frame[entry["label_column"]].to_numpy()


def fitted(family: str, data: tuple[pd.DataFrame, np.ndarray], **params: object):
    x, y = data
    spaces = search_spaces_for("credit")
    params = {**SMALL[family], **params}
    return build_pipeline(family, params, spaces=spaces, layout=layout_for("credit")).fit(x, y)


def base_estimator(model):
    classifier = model.named_steps["classifier"]
    return classifier.calibrated_classifiers_[0].estimator


@pytest.mark.parametrize("encoding", ["scaled", "binned"])
def test_linear_contributions_add_up_to_the_log_odds(credit_data, encoding: str) -> None:
    x, _ = credit_data
    model = fitted("logreg", credit_data, encoding=encoding)
    rows = x.iloc[:50]
    contributions = feature_contributions(model, rows)
    assert contributions.values.shape == (50, x.shape[1])
    features = model.named_steps["features"]
    score = base_estimator(model).decision_function(features.transform(rows))
    np.testing.assert_allclose(contributions.values.sum(axis=1) + contributions.reference, score)


def test_linear_top_reason_is_the_feature_whose_removal_lowers_the_score_most(credit_data) -> None:
    """Resetting each feature to the median client's value: the biggest drop is reason one."""
    x, _ = credit_data
    model = fitted("logreg", credit_data, encoding="binned")
    features, estimator = model.named_steps["features"], base_estimator(model)
    medians = features.steps[0][1].transformers_[0][1].statistics_
    row = x.iloc[[int(np.argmax(x["worst_delay"].to_numpy()))]]
    base = estimator.decision_function(features.transform(row))[0]
    drops = {}
    for j, name in enumerate(x.columns):
        changed = row.copy()
        changed[name] = changed[name].astype("float64")
        changed.iloc[0, j] = medians[j]
        drops[name] = base - estimator.decision_function(features.transform(changed))[0]
    expected = [n for n, d in sorted(drops.items(), key=lambda kv: -kv[1]) if d > 0][:TOP_REASONS]
    reasons = explain(model, row)[0]
    assert [r["feature"] for r in reasons] == expected
    assert [r["contribution"] for r in reasons] == pytest.approx([drops[n] for n in expected])


@pytest.mark.parametrize("family", ["lightgbm", "hist_gbm", "forest"])
def test_treeshap_contributions_add_up_to_the_model_score(credit_data, family: str) -> None:
    x, _ = credit_data
    model = fitted(family, credit_data)
    rows = x.iloc[:40]
    contributions = feature_contributions(model, rows)
    z = model.named_steps["features"].transform(rows)
    estimator = base_estimator(model)
    if family == "lightgbm":
        score = estimator.booster_.predict(z, raw_score=True)
    elif family == "hist_gbm":
        score = estimator.decision_function(z)
    else:
        score = estimator.predict_proba(z)[:, 1]
    total = contributions.values.sum(axis=1) + contributions.reference
    np.testing.assert_allclose(total, score, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["logreg", "lightgbm"])
def test_reasons_are_the_largest_positive_contributions_in_order(credit_data, family) -> None:
    x, _ = credit_data
    model = fitted(family, credit_data)
    rows = x.iloc[:200]
    contributions = feature_contributions(model, rows)
    reasons = explain(model, rows)
    assert len(reasons) == len(rows)
    for i, row_reasons in enumerate(reasons):
        values = contributions.values[i]
        positive = sorted(
            ((v, n) for v, n in zip(values, contributions.features, strict=True) if v > 0),
            reverse=True,
        )
        assert [r["feature"] for r in row_reasons] == [n for _, n in positive[:TOP_REASONS]]
        assert all(r["contribution"] > 0 for r in row_reasons)
        assert all(
            a["contribution"] >= b["contribution"] for a, b in itertools.pairwise(row_reasons)
        )
        for reason in row_reasons:
            assert reason["value"] == pytest.approx(float(rows.iloc[i][reason["feature"]]))


def test_a_heavy_recent_delay_is_a_reason_and_a_clean_record_is_not(credit_data) -> None:
    """Directional: months of delay raise default risk in the fitted model."""
    x, _ = credit_data
    model = fitted("lightgbm", credit_data)
    clean = x[(x["worst_delay"] == 0) & (x["months_paid_duly"] >= 3)].iloc[[0]]
    late = clean.copy()
    for column in ("delay_m1", "delay_m2", "worst_delay"):
        late[column] = 3.0
    late["months_delinquent"] = 2
    late["months_since_delinquent"] = 1
    assert model.predict_proba(late)[0, 1] > model.predict_proba(clean)[0, 1]
    late_reasons = {r["feature"] for r in explain(model, late)[0]}
    assert late_reasons & {
        "delay_m1",
        "delay_m2",
        "worst_delay",
        "months_delinquent",
        "months_since_delinquent",
    }
    clean_reasons = {r["feature"] for r in explain(model, clean)[0]}
    assert "delay_m1" not in clean_reasons


def test_top_reasons_skips_non_positive_contributions() -> None:
    from explain.contributions import Contributions

    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "c": [5.0, 6.0]})
    contributions = Contributions(
        ("a", "b", "c"), np.array([[0.5, -1.0, 2.0], [-0.1, 0.0, -3.0]]), np.zeros(2), "test"
    )
    reasons = top_reasons(contributions, frame)
    assert [r["feature"] for r in reasons[0]] == ["c", "a"]
    assert reasons[1] == []
    assert logit(0.5) == 0.0  # scipy present for the calibrated families


def test_a_linear_pipeline_without_imputer_is_explained_from_the_training_mean(
    credit_data,
) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = credit_data
    model = Pipeline(
        [
            ("features", ColumnTransformer([("num", StandardScaler(), list(x.columns))])),
            ("classifier", LogisticRegression(max_iter=500)),
        ]
    ).fit(x, y)
    rows = x.iloc[:30]
    contributions = feature_contributions(model, rows)
    score = model.decision_function(rows)
    np.testing.assert_allclose(contributions.values.sum(axis=1) + contributions.reference, score)
    assert len(explain(model, rows)) == 30
