"""drift_check's detect_drift task on the credit use case: the tabular checks, by its config.

The task function of the DAG (`pipelines.drift.detect_drift`, use case `credit`) reads a day's
window of scored clients (the prediction log's columns) and the champion's reference profile
(built as `register` builds it), and decides with the checks credit's drift.yaml names: Evidently
drift per feature column, PSI per feature, drift of the predicted probability; no text checks.

- Real UCI clients (skipped when the dataset is absent): the reference is 3,000 held-out
  clients scored by a calibrated logistic regression fitted on 15,000 others; days of 300
  random other clients must not fire, days of young clients (<= 28) using at least 80 % of
  their limit, a segment unlike the training population, must.
- Synthetic clients: an unshifted day does not fire, a fully shifted one does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from contracts.sources import load_sources, source_columns
from features.credit import FEATURE_COLUMNS, RAW_COLUMNS, build_features
from monitoring.config import KIND_CHECKS
from monitoring.reference import build_reference_profile, save_profile
from tests.helpers import real_dataset
from training.zoo import build_pipeline, layout_for, search_spaces_for

pytestmark = pytest.mark.slow

DAY = 300
TABULAR = list(KIND_CHECKS["tabular"])


def _features(frame: pd.DataFrame) -> pd.DataFrame:
    mapping = source_columns(load_sources()["credit"], RAW_COLUMNS)
    return build_features(frame.rename(columns={f: c for c, f in mapping.items()}))


def _model(features: pd.DataFrame, labels: np.ndarray):
    pipeline = build_pipeline(
        "logreg", None, spaces=search_spaces_for("credit"), layout=layout_for("credit")
    )
    return pipeline.fit(features, labels)


class Checker:
    """Writes the reference profile and each day's window, runs the DAG's detect_drift."""

    def __init__(self, folder: Path, model, reference: pd.DataFrame, labels: np.ndarray) -> None:
        self.folder, self.model = folder, model
        profile = build_reference_profile(
            reference, model.predict_proba(reference)[:, 1], labels, use_case="credit"
        )
        path = save_profile(profile, folder / "reference" / "profile.parquet")
        self.reference = {"available": True, "version": "1", "profile_path": str(path)}
        self.days = 0

    def __call__(self, day: pd.DataFrame) -> dict:
        from pipelines.drift import detect_drift

        self.days += 1
        run_dir = self.folder / f"day{self.days}"
        run_dir.mkdir()
        score = self.model.predict_proba(day)[:, 1]
        window_frame = day.reset_index(drop=True).assign(
            score=score,
            prediction=(score >= 0.5).astype("int64"),
            feedback_label=pd.array([pd.NA] * len(day), dtype="Int64"),
        )
        window_frame.to_parquet(run_dir / "current.parquet", index=False)
        window = {
            "current_path": str(run_dir / "current.parquet"),
            "rows": len(day),
            "run_dir": str(run_dir),
            "window_start": f"2026-11-{self.days:02d}T00:00:00+00:00",
            "window_end": f"2026-11-{self.days + 1:02d}T00:00:00+00:00",
        }
        return detect_drift(window, self.reference, {}, "credit")


def _tabular_only(outcome: dict) -> None:
    assert list(outcome["checks"]) == TABULAR
    assert outcome["metrics"]["checks_run"] == TABULAR
    assert outcome["metrics"]["descriptors"] == {}
    assert set(outcome["metrics"]["features"]) == set(FEATURE_COLUMNS)
    assert Path(outcome["report_html"]).is_file()


@pytest.mark.realdata
def test_a_segment_unlike_the_training_population_fires_ordinary_days_do_not(
    driftloop_home: Path, tmp_path: Path
) -> None:
    entry = load_sources()["credit"]
    frame = pd.read_csv(real_dataset(entry["file"]))
    features, labels = _features(frame), frame[entry["label_column"]].to_numpy()
    order = np.random.default_rng(0).permutation(len(features))
    train, ref_idx, rest = order[:15_000], order[15_000:18_000], order[18_000:]
    model = _model(features.iloc[train], labels[train])
    check = Checker(tmp_path, model, features.iloc[ref_idx], labels[ref_idx])

    scored = features.iloc[rest]
    in_segment = ((scored["age_years"] <= 28) & (scored["util_mean"] >= 0.8)).to_numpy()
    segment = np.random.default_rng(2).permutation(rest[in_segment])
    ordinary = np.random.default_rng(3).permutation(rest[~in_segment])
    assert len(segment) >= 2 * DAY

    for k in range(4):
        outcome = check(features.iloc[ordinary[k * DAY : (k + 1) * DAY]])
        _tabular_only(outcome)
        assert outcome["decision"] == "no_drift", (k, outcome["reasons"])
    for k in range(2):
        outcome = check(features.iloc[segment[k * DAY : (k + 1) * DAY]])
        _tabular_only(outcome)
        assert outcome["decision"] == "drift", (k, outcome["checks"])
        fired = {r["metric"] for r in outcome["reasons"]}
        assert {"feature_psi", "prediction_drift"} <= fired, outcome["checks"]
        assert (
            outcome["metrics"]["prediction"]["current_mean_score"]
            > (outcome["metrics"]["prediction"]["reference_mean_score"])
        )


def test_synthetic_clients_shifted_fire_unshifted_do_not(
    driftloop_home: Path, tmp_path: Path
) -> None:
    from synthetic.credit import LABEL_COLUMN, generate

    train = generate(4000, seed=10)
    reference = generate(1500, seed=11)
    model = _model(_features(train), train[LABEL_COLUMN].to_numpy())
    check = Checker(tmp_path, model, _features(reference), reference[LABEL_COLUMN].to_numpy())

    calm = check(_features(generate(DAY, seed=12)))
    _tabular_only(calm)
    assert calm["decision"] == "no_drift", calm["reasons"]
    shifted = check(_features(generate(DAY, seed=13, shift=1.0)))
    _tabular_only(shifted)
    assert shifted["decision"] == "drift", shifted["checks"]


def test_drift_check_reads_credit_traffic_from_the_prediction_log(
    driftloop_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_window -> detect_drift -> check_performance as the DAG chains them, on credit
    predictions logged the way the API logs them (typed raw columns, features, score)."""
    from datetime import UTC, datetime, timedelta

    from features.credit import RAW_COLUMNS as CREDIT_RAW
    from pipelines.drift import check_performance, detect_drift, load_window
    from pipelines.params import check_drift_params
    from serving.prediction_log import PredictionLog, log_schema
    from serving.prediction_store import to_micros
    from synthetic.credit import LABEL_COLUMN, generate

    monkeypatch.setenv("DRIFTLOOP_PREDICTION_LOG_URL", f"sqlite:///{tmp_path / 'log.db'}")
    train, reference = generate(4000, seed=30), generate(1500, seed=31)
    model = _model(_features(train), train[LABEL_COLUMN].to_numpy())
    check = Checker(tmp_path, model, _features(reference), reference[LABEL_COLUMN].to_numpy())
    schema = log_schema("credit")
    mapping = source_columns(load_sources()["credit_synthetic"], CREDIT_RAW)
    day1 = datetime(2026, 11, 1, tzinfo=UTC)
    log = PredictionLog(schema=schema, flush_seconds=0.05)
    log.start()
    for offset, shift in ((0, 0.0), (1, 1.0)):
        clients = generate(DAY, seed=40 + offset, shift=shift)
        raw = clients.rename(columns={f: c for c, f in mapping.items()})[list(CREDIT_RAW)]
        raw = raw.astype({c: schema.raw_dtypes[c] for c in CREDIT_RAW})
        features = build_features(raw)[list(FEATURE_COLUMNS)]
        score = model.predict_proba(features)[:, 1]
        for i in range(DAY):
            row = (
                f"d{offset}-{i}",
                to_micros(day1 + timedelta(days=offset, seconds=i)),
                "credit-default",
                "1",
                *(raw[c].iloc[i].item() for c in CREDIT_RAW),
                *(features[c].iloc[i].item() for c in FEATURE_COLUMNS),
                float(score[i]),
                int(score[i] >= 0.5),
            )
            log.record(row)
    truth = generate(DAY, seed=40)[LABEL_COLUMN]
    for i in range(250):  # late labels for the calm day: realised performance is assessed
        log.add_feedback(f"d0-{i}", int(truth.iloc[i]))
    assert log.close(timeout=60)

    decisions = []
    for offset in (0, 1):
        start = (day1 + timedelta(days=offset)).isoformat()
        params = check_drift_params(
            {"use_case": "credit", "window_start": start}, check_files=False
        )
        assert params["model_name"] == "credit-default"
        window = load_window(params, f"credit-day-{offset}", None, None)
        assert (window["rows"], window["use_case"]) == (DAY, "credit")
        outcome = detect_drift(window, check.reference, {}, params["use_case"])
        _tabular_only(outcome)
        decisions.append(outcome["decision"])
        if offset == 0:
            reference = {**check.reference, "test_metrics": {"accuracy": 0.8, "roc_auc": 0.75}}
            performance = check_performance(window, reference, {})
            assert performance["n_labels"] == 250, performance
            assert performance["status"] != "insufficient_labels", performance
    assert decisions == ["no_drift", "drift"]
