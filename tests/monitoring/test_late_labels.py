"""Late labels: realised quality per prediction day as labels land, and the CBPE estimate.

A real SQLite prediction log (serving's writer) holds three prediction days;
feedback labels arrive days later through the feedback store. Each check reads
the log afresh, so a label for day D updates day D whenever it lands.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from features.reviews import build_features
from monitoring import push
from monitoring.cbpe import CBPE, expected_roc_auc
from monitoring.config import load_thresholds
from monitoring.late_labels import check_late_labels, load_config
from monitoring.reference import build_reference_profile, save_profile
from pipelines import drift
from serving.prediction_store import read_predictions
from synthetic.reviews import generate_reviews
from tests.monitoring.logged_traffic import add_labels, log_predictions
from tests.observability.tools import http_get, pushgateway

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
CHAMPION = {"accuracy": 0.9, "roc_auc": 0.95}


def _calibrated(n: int, seed: int, a: float = 0.6, b: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels drawn so that P(label 1 | score) = score."""
    rng = np.random.default_rng(seed)
    scores = rng.beta(a, b, n)
    return scores, (rng.random(n) < scores).astype("int64")


def test_cbpe_estimates_realised_quality_from_scores_alone() -> None:
    ref_scores, ref_labels = _calibrated(5000, 0)
    # A model whose raw scores are squashed towards 0.5: CBPE calibrates them on the reference.
    squash = lambda s: 0.5 + (s - 0.5) * 0.4  # noqa: E731
    estimator = CBPE(0.5).fit(squash(ref_scores), ref_labels)
    day_scores, day_labels = _calibrated(3000, 1)
    estimate = estimator.estimate(squash(day_scores))
    realised_accuracy = float(((day_scores >= 0.5) == day_labels).mean())
    from sklearn.metrics import roc_auc_score

    assert estimate["accuracy"] == pytest.approx(realised_accuracy, abs=0.025)
    assert estimate["roc_auc"] == pytest.approx(roc_auc_score(day_labels, day_scores), abs=0.025)
    # Uncalibrated, the squashed scores would promise far less than is realised.
    raw = CBPE(0.5).fit(squash(ref_scores), None).estimate(squash(day_scores))
    assert raw["accuracy"] < realised_accuracy - 0.1
    # A day whose scores crowd 0.5 (the model unsure): the estimate drops before any label.
    unsure, _ = _calibrated(3000, 2, a=8, b=8)
    assert estimator.estimate(squash(unsure))["accuracy"] < estimate["accuracy"] - 0.15
    assert expected_roc_auc(np.array([0.5])) is None


def _log_day(url: str, model: str, day: datetime, n: int, seed: int) -> dict[str, int]:
    """n predictions on `day` with calibrated scores; returns request id -> true label."""
    scores, labels = _calibrated(n, seed)
    ids = [f"{model}-{day:%m%d}-{i}" for i in range(n)]
    texts = generate_reviews(n, seed=seed)["text"].tolist()
    log_predictions(url, ids, texts, scores.tolist(), day + timedelta(hours=10), model)
    return dict(zip(ids, labels.tolist(), strict=True))


@pytest.fixture
def logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    monkeypatch.setenv("DRIFTLOOP_PREDICTION_LOG_URL", url)
    model = f"late-{uuid.uuid4().hex[:8]}"
    days = [TODAY - timedelta(days=k) for k in (3, 2, 1)]
    truth = [_log_day(url, model, day, 120, seed) for seed, day in enumerate(days, start=10)]
    ref_scores, ref_labels = _calibrated(2000, 99)
    texts = generate_reviews(2000, seed=99)["text"].tolist()
    profile = build_reference_profile(
        build_features(pd.DataFrame({"text": texts})), ref_scores, ref_labels
    )
    return {"url": url, "model": model, "days": days, "truth": truth, "profile": profile}


def _by_day(outcome: dict) -> dict[str, dict]:
    return {d["day"]: d for d in outcome["days"]}


def test_a_late_label_updates_its_prediction_day(logged: dict) -> None:
    url, model, days, truth = logged["url"], logged["model"], logged["days"], logged["truth"]
    thresholds = load_thresholds({"min_labels": 50})
    config = load_config({"min_label_coverage": 0.5, "min_day_labels": 40})

    def check() -> dict:
        frame = read_predictions(url, TODAY - timedelta(days=14), TODAY, model_name=model)
        return check_late_labels(frame, logged["profile"], CHAMPION, thresholds, config)

    # Day 1's labels land the next day (80 of 120); days 2 and 3 have none yet.
    first = dict(list(truth[0].items())[:80])
    add_labels(url, first, days[1] + timedelta(hours=12))
    before = _by_day(check())
    d1, d2, d3 = (f"{d:%Y-%m-%d}" for d in days)
    assert [before[d]["predictions"] for d in (d1, d2, d3)] == [120, 120, 120]
    assert before[d1]["labelled"] == 80 and before[d1]["coverage"] == pytest.approx(80 / 120)
    assert before[d1]["covered"] and not before[d2]["covered"]
    assert before[d2]["labelled"] == 0 and before[d2]["realised"]["accuracy"] is None
    # The estimate is there for every day, labels or not.
    assert all(before[d]["estimated"]["accuracy"] is not None for d in (d1, d2, d3))

    # Day 2's labels arrive three days late, and say the model was wrong on that day.
    wrong = {rid: 1 - label for rid, label in list(truth[1].items())[:90]}
    add_labels(url, wrong, TODAY + timedelta(hours=1))
    outcome = check()
    after = _by_day(outcome)
    assert after[d1] == before[d1]  # day 1 untouched
    assert after[d2]["labelled"] == 90 and after[d2]["covered"]
    # Predicted at 10:00 on TODAY-2, labelled at 01:00 TODAY: 39 h late.
    assert after[d2]["median_label_lag_hours"] == pytest.approx(24 + 15)
    scores = read_predictions(url, days[1], days[2], model_name=model).set_index("request_id")
    expected = np.mean([(scores.loc[r, "score"] >= 0.5) == y for r, y in wrong.items()])
    assert after[d2]["realised"]["accuracy"] == pytest.approx(expected)
    assert after[d2]["realised"]["accuracy"] < 0.4
    assert outcome["covered_days"] == [d1, d2]
    assert outcome["pooled"]["n_labels"] == 170
    assert outcome["retrain"] is True
    assert outcome["reasons"][0]["metric"].startswith("late_label_")
    # A label that corrects an earlier one replaces it (the latest label counts).
    add_labels(url, {next(iter(wrong)): truth[1][next(iter(wrong))]}, TODAY + timedelta(hours=2))
    assert _by_day(check())[d2]["labelled"] == 90


def test_quiet_days_with_too_little_coverage_do_not_retrain(logged: dict) -> None:
    url, model, truth = logged["url"], logged["model"], logged["truth"]
    # Few (wrong) labels everywhere: no day reaches the coverage to count.
    add_labels(url, {rid: 1 - y for rid, y in list(truth[2].items())[:10]}, TODAY)
    frame = read_predictions(url, TODAY - timedelta(days=14), TODAY, model_name=model)
    outcome = check_late_labels(
        frame, logged["profile"], CHAMPION, load_thresholds({"min_labels": 5}), load_config()
    )
    assert outcome["covered_days"] == [] and outcome["retrain"] is False
    assert any("needed: no decision" in note for note in outcome["pooled"]["notes"])


def _value(text: str, name: str, labels: dict[str, str]) -> float:
    for line in text.splitlines():
        match = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if match and match.group(1) == name:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(match.group(3))
    raise AssertionError(f"no {name}{labels}")


def test_drift_check_step_logs_per_day_and_triggers_a_retrain(
    logged: dict, driftloop_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, model, truth, days = logged["url"], logged["model"], logged["truth"], logged["days"]
    add_labels(url, {rid: 1 - y for rid, y in list(truth[0].items())[:100]}, TODAY)
    reference = {
        "available": True,
        "model_name": model,
        "version": "3",
        "profile_path": str(save_profile(logged["profile"], tmp_path / "profile.parquet")),
        "test_metrics": CHAMPION,
    }
    window = {
        "window_start": (TODAY - timedelta(days=1)).isoformat(),
        "window_end": TODAY.isoformat(),
    }
    late = drift.check_late_labels(window, reference, {"min_labels": 50, "min_rows": 50})
    assert late["retrain"] and late["covered_days"] == [f"{days[0]:%Y-%m-%d}"]
    history = mlflow.MlflowClient().get_metric_history(late["mlflow_run_id"], "label_coverage")
    assert sorted(m.value for m in history) == pytest.approx([0.0, 0.0, 100 / 120])
    estimated = mlflow.MlflowClient().get_metric_history(
        late["mlflow_run_id"], "estimated_accuracy"
    )
    assert len(estimated) == 3

    with pushgateway(tmp_path) as gateway:
        monkeypatch.setenv(push.PUSHGATEWAY_ENV, gateway)
        params = {"model_name": model, "retrain_data_path": "/landing/new.csv"}
        conf = drift.decide({"decision": "no_drift", "reasons": []}, {}, params, "d1", late)
        text = http_get(f"{gateway}/metrics")
    assert conf is not None and "late-label quality drop" in conf["reason"]
    group = {"job": "driftloop_drift_check", "use_case": "reviews"}
    assert _value(text, "driftloop_late_label_retrain", group) == 1.0
    day1 = {**group, "prediction_day": f"{days[0]:%Y-%m-%d}"}
    assert _value(text, "driftloop_prediction_day_label_coverage_ratio", day1) == pytest.approx(
        100 / 120
    )
    assert _value(text, "driftloop_estimated_performance", {**group, "metric": "accuracy"}) == (
        pytest.approx(late["estimated"]["accuracy"])
    )
    assert (
        _value(
            text, "driftloop_prediction_day_realised_performance", {**day1, "metric": "accuracy"}
        )
        < 0.5
    )
