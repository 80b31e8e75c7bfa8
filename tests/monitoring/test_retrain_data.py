"""drift_check retrains with default Params: champion snapshot + feedback + landing folder.

Real pieces throughout: an MLflow registry whose champion was trained from an
ingested snapshot, a SQLite prediction log written by serving's writer with
labels stored through the feedback path, a landing folder with a Parquet file,
and training's own Param check, ingestion and lineage logging on the result.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from ingestion.ingest import file_sha256, snapshot_sources
from ingestion.validate import validate_sources
from pipelines.drift import decide
from pipelines.params import check_training_params
from pipelines.training import data_lineage, log_data_lineage, resolve_sources, run_dir_for
from synthetic.reviews import generate_reviews
from tests.monitoring.logged_traffic import add_labels, log_predictions
from training.mlflow_utils import configure
from training.promote import load_gate_policy

DRIFT = {
    "decision": "drift",
    "reasons": [{"metric": "text_domain", "value": 0.9, "threshold": 0.7}],
}
QUIET = {"status": "ok", "concept_drift": False, "reasons": []}
NOW = datetime.now(UTC)


def _make_champion(model: str, sources: list[dict], airflow_run: str) -> dict:
    """Snapshot `sources` the way training_pipeline's ingest does; register the run as champion."""
    manifest = snapshot_sources(sources, str(run_dir_for(airflow_run)))
    configure()
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run:
        mlflow.set_tags({"airflow_run_id": airflow_run, "data_sha256": manifest["data_sha256"]})
    if not client.search_registered_models(f"name = '{model}'"):
        client.create_registered_model(model)
    version = client.create_model_version(model, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias(model, "champion", version.version)
    return manifest


@pytest.fixture
def setup(driftloop_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("DRIFTLOOP_PREDICTION_LOG_URL", f"sqlite:///{tmp_path / 'predictions.db'}")
    monkeypatch.setenv("DRIFTLOOP_LANDING_DIR", str(tmp_path / "landing"))
    model = f"retrain-data-{uuid.uuid4().hex[:8]}"
    raw = tmp_path / "train.csv"
    generate_reviews(60, seed=1).to_csv(raw, index=False)
    manifest = _make_champion(model, [{"path": str(raw), "source": "synthetic"}], f"t_{model}")
    texts = generate_reviews(5, seed=2)["text"].tolist()
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    ids = [f"{model}-r{i}" for i in range(5)]
    log_predictions(url, ids, texts, [0.9, 0.2, 0.7, 0.4, 0.6], NOW - timedelta(days=3), model)
    return {
        "model": model,
        "raw": raw,
        "manifest": manifest,
        "url": url,
        "ids": ids,
        "tmp": tmp_path,
    }


def test_drift_retrains_on_snapshot_feedback_and_landing_with_counts_and_hashes(
    setup: dict, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    model, ids = setup["model"], setup["ids"]
    # Three labels arrive, two days after the predictions; two predictions stay unlabelled.
    add_labels(setup["url"], {ids[0]: 1, ids[1]: 0, ids[3]: 1}, NOW - timedelta(days=1))
    landing = setup["tmp"] / "landing" / "reviews"
    landing.mkdir(parents=True)
    generate_reviews(7, seed=3).to_parquet(landing / "new_reviews.parquet", index=False)
    # A copy of the file the champion was trained on is not new data.
    (landing / "old.csv").write_bytes(setup["raw"].read_bytes())
    # A subfolder names the source: Amazon's own columns, as JSON lines.
    (landing / "amazon").mkdir()
    ratings = pd.DataFrame(
        {"reviews.text": ["great", "awful", "fine"], "reviews.rating": [5, 1, 4]}
    )
    ratings.to_json(landing / "amazon" / "week48.jsonl", orient="records", lines=True)

    conf = decide(DRIFT, QUIET, {"model_name": model}, "scheduled__d1")

    assert conf is not None, caplog.text
    every = conf["trigger"]["retrain_data"]["parts"]
    amazon = next(p for p in every if p["source"] == "amazon")
    assert amazon["kind"] == "landing" and amazon["rows"] == 3
    parts = {p["kind"]: p for p in every if p is not amazon}
    assert sorted(parts) == ["feedback", "landing", "snapshot"]
    assert len(every) == 4  # old.csv left out
    snapshot = setup["manifest"]["sources"][0]
    assert parts["snapshot"]["rows"] == 60
    assert parts["snapshot"]["sha256"] == snapshot["sha256"]
    assert parts["feedback"]["rows"] == 3 and parts["landing"]["rows"] == 7
    for part in parts.values():
        assert file_sha256(Path(part["path"]))[0] == part["sha256"]
    feedback = pd.read_csv(parts["feedback"]["path"])
    assert dict(zip(feedback["request_id"], feedback["label"], strict=True)) == {
        ids[0]: 1,
        ids[1]: 0,
        ids[3]: 1,
    }
    summary = json.loads(Path(conf["trigger"]["retrain_data"]["summary_path"]).read_text())
    assert summary["rows_by_kind"] == {"snapshot": 60, "feedback": 3, "landing": 10}
    assert summary["new_rows"] == 13 and summary["snapshot"]["airflow_run_id"] == f"t_{model}"

    # training_pipeline accepts the conf, ingests exactly these files, and records the lineage.
    params = check_training_params(conf, check_files=True)
    run_dir = run_dir_for(f"retrain_{model}")
    manifest = snapshot_sources(resolve_sources(params, run_dir), str(run_dir))
    lineage = data_lineage(params, manifest)
    assert lineage["rows_by_kind"] == {"snapshot": 60, "feedback": 3, "landing": 10}
    assert {p["name"]: p["sha256"] for p in lineage["parts"]} == {
        p["name"]: p["sha256"] for p in every
    }
    with mlflow.start_run() as run:
        pass
    log_data_lineage(run.info.run_id, params, manifest)
    logged = mlflow.MlflowClient().get_run(run.info.run_id)
    assert logged.data.tags["data_rows_feedback"] == "3"
    assert logged.data.tags["data_rows_snapshot"] == "60"
    feedback_param = logged.data.params[f"data.{parts['feedback']['name']}"]
    assert feedback_param == f"feedback 3 rows sha256 {parts['feedback']['sha256']}"
    artifact = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/data_lineage.json")
    assert artifact["data_sha256"] == manifest["data_sha256"]

    # The rows' segments (the gate's per-source checks) are canonical source names, not part
    # names like landing-amazon or feedback-<time>; validation still counts per part.
    assert {p["name"]: p["segment"] for p in every} == {
        parts["snapshot"]["name"]: "synthetic",
        parts["feedback"]["name"]: "feedback",
        parts["landing"]["name"]: "synthetic",
        amazon["name"]: "amazon",
    }
    report = validate_sources(manifest, str(run_dir))
    accepted = pd.read_parquet(report["accepted_path"])
    assert set(accepted["source"]) == {"synthetic", "feedback", "amazon"}
    assert report["segments"] == accepted["source"].value_counts().to_dict()
    assert report["segments"]["feedback"] == 3 and report["segments"]["amazon"] == 3
    assert set(report["per_source"]) == {p["name"] for p in every}
    segment_of = load_gate_policy().segments.labels_of(accepted)
    assert segment_of is not None and set(segment_of) == {"synthetic", "feedback", "amazon"}

    # Once a retrain trained on them, the same labels are no longer new.
    _make_champion(model, params["extra_sources"], f"t2_{model}")
    assert decide(DRIFT, QUIET, {"model_name": model}, "scheduled__d2") is None
    # A late label for an old prediction is new again.
    add_labels(setup["url"], {ids[4]: 0}, NOW)
    again = decide(DRIFT, QUIET, {"model_name": model}, "scheduled__d3")
    assert again is not None
    assert again["trigger"]["retrain_data"]["rows_by_kind"]["feedback"] == 1
    # Last retrain's feedback, now in the snapshot, stays in the one `feedback` segment.
    segments = {(p["kind"], p["segment"]) for p in again["trigger"]["retrain_data"]["parts"]}
    assert segments == {
        ("snapshot", "synthetic"),
        ("snapshot", "feedback"),
        ("snapshot", "amazon"),
        ("feedback", "feedback"),
    }


def test_nothing_new_labelled_reports_drift_and_starts_no_retrain(
    setup: dict, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert decide(DRIFT, QUIET, {"model_name": setup["model"]}, "scheduled__quiet") is None
    assert "nothing new is labelled" in caplog.text
    assert "no retrain started" in caplog.text


def test_a_changed_file_between_decision_and_retrain_fails_the_lineage(setup: dict) -> None:
    params = {"trigger": {"retrain_data": {"parts": [{"name": "synthetic", "sha256": "0" * 64}]}}}
    with pytest.raises(ValueError, match="changed between the decision and the retrain"):
        data_lineage(params, setup["manifest"])
