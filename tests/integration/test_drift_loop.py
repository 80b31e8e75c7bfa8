"""The closed loop in-process: champion → logged traffic → drift_check → retrain → gate.

A quiet in-domain day must not trigger anything; a day of product reviews at a
movie-review model, some of it labelled through /feedback, must trigger
`training_pipeline` with default Params and a conf that says why, and that run,
fed the champion's snapshot + the labelled rows + the landing folder, must
register a new version that records where its rows came from.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from synthetic import generate_reviews

pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.spark]

MODEL = "drift-loop-model"
DAGS = Path(__file__).resolve().parents[2] / "airflow" / "dags"


@pytest.fixture(scope="module")
def dags(airflow_db: Path, driftloop_home: Path):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    return bag.dags["training_pipeline"], bag.dags["drift_check"]


@pytest.fixture(scope="module")
def champion(dags) -> str:
    training, _ = dags
    run = training.test(
        run_conf={
            "families": ["logreg", "naive_bayes"],
            "n_trials": 3,
            "family_timeout_s": 120,
            "data_path": "",
            "synthetic_rows": 2500,
            "model_name": MODEL,
            "reason": "seed",
        }
    )
    assert "success" in str(run.state)
    import mlflow

    return str(mlflow.MlflowClient().get_model_version_by_alias(MODEL, "champion").version)


def _serve_day(texts: list[str], labels: list[int] | None = None) -> tuple[str, str]:
    """Send a day's traffic through the real app (and `labels` through /feedback).

    Returns the window it was logged in.
    """
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.config import ServingSettings

    start = datetime.now(UTC)
    with TestClient(create_app(ServingSettings(model_name=MODEL))) as client:
        assert client.get("/ready").status_code == 200
        ids = []
        for text in texts:
            response = client.post("/predict", json={"text": text})
            assert response.status_code == 200
            ids.append(response.json()["request_id"])
        for request_id, label in zip(ids, labels or [], strict=False):
            body = {"request_id": request_id, "label": int(label)}
            assert client.post("/feedback", json=body).status_code == 201
    time.sleep(0.01)
    return start.isoformat(), datetime.now(UTC).isoformat()


def _drift_conf_runs() -> list:
    from airflow.models.dagrun import DagRun

    return [
        r
        for r in DagRun.find(dag_id="training_pipeline")
        if str((r.conf or {}).get("reason", "")).startswith("drift_check")
    ]


def _task_states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_in_domain_day_does_not_trigger(dags, champion: str) -> None:
    _, drift_check = dags
    start, end = _serve_day(generate_reviews(300, seed=101)["text"].tolist())
    before = len(_drift_conf_runs())
    run = drift_check.test(
        run_conf={
            "model_name": MODEL,
            "window_start": start,
            "window_end": end,
            "thresholds": {"min_rows": 100},
        }
    )
    states = _task_states(run)
    assert states["detect_drift"].endswith("success")
    assert states["trigger_retrain"].endswith("skipped"), states
    assert len(_drift_conf_runs()) == before


def test_quiet_day_is_no_decision(dags, champion: str) -> None:
    _, drift_check = dags
    start, end = _serve_day(generate_reviews(20, seed=102)["text"].tolist())
    run = drift_check.test(
        run_conf={
            "model_name": MODEL,
            "window_start": start,
            "window_end": end,
            "thresholds": {"min_rows": 100},
        }
    )
    states = _task_states(run)
    assert states["trigger_retrain"].endswith("skipped"), states
    ti = next(t for t in run.get_task_instances() if t.task_id == "detect_drift")
    assert ti.xcom_pull(task_ids="detect_drift")["decision"] == "insufficient_data"
    # The daily re-gate runs whatever the drift verdict; the seed model is champion, so there
    # is no challenger awaiting shadow traffic: it says so and succeeds.
    assert states["regate_challenger"].endswith("success"), states
    regate = ti.xcom_pull(task_ids="regate_challenger")
    assert regate["status"] == "no_challenger" and regate["model_name"] == MODEL


def test_product_day_triggers_retraining_that_registers(
    dags, champion: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No data Param: the retrain uses the snapshot, the day's /feedback labels and the landing."""
    training, drift_check = dags
    monkeypatch.setenv("DRIFTLOOP_LANDING_DIR", str(tmp_path / "landing"))
    landing = tmp_path / "landing" / "reviews"
    landing.mkdir(parents=True)
    generate_reviews(1200, seed=7, domain="products").to_parquet(
        landing / "products.parquet", index=False
    )
    day = generate_reviews(300, seed=103, domain="products")
    start, end = _serve_day(day["text"].tolist(), day["label"].tolist()[:200])
    before = len(_drift_conf_runs())
    run = drift_check.test(
        run_conf={
            "model_name": MODEL,
            "window_start": start,
            "window_end": end,
            "thresholds": {"min_rows": 100},
            "retrain_conf": {"families": ["logreg", "naive_bayes"], "n_trials": 3},
        }
    )
    states = _task_states(run)
    assert states["check_late_labels"].endswith("success"), states
    assert states["trigger_retrain"].endswith("success"), states
    triggered = _drift_conf_runs()
    assert len(triggered) == before + 1
    conf = dict(triggered[-1].conf)
    assert not conf["data_path"]
    rows = conf["trigger"]["retrain_data"]["rows_by_kind"]
    assert rows == {"snapshot": 2500, "feedback": 200, "landing": 1200}, rows
    assert conf["families"] == ["logreg", "naive_bayes"]
    assert conf["trigger"]["reasons"], conf
    assert Path(conf["trigger"]["report_html"]).exists()

    retrain = training.test(run_conf=conf)
    assert "success" in str(retrain.state), _task_states(retrain)
    import mlflow

    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name='{MODEL}'")
    newest = max(versions, key=lambda v: int(v.version))
    assert int(newest.version) > int(champion)
    tags = client.get_run(newest.run_id).data.tags
    assert tags["trigger_reason"].startswith("drift_check")
    assert (tags["data_rows_snapshot"], tags["data_rows_feedback"]) == ("2500", "200")
    lineage = mlflow.artifacts.load_dict(f"runs:/{newest.run_id}/data_lineage.json")
    assert sorted(p["kind"] for p in lineage["parts"]) == ["feedback", "landing", "snapshot"]
    _assert_gate_decided_by_its_numbers(client, newest)


def _assert_gate_decided_by_its_numbers(client, newest) -> None:  # type: ignore[no-untyped-def]
    """The version's gate verdict, aliases and recorded numbers agree with gate.yaml's rules."""
    import json

    from training.promote import GATE_CONFIG, load_gate_policy

    policy = load_gate_policy(GATE_CONFIG)
    tags = newest.tags
    report = json.loads(tags["gate.report"])
    checks = [dict(zip(report["columns"], row, strict=True)) for row in report["checks"]]
    overall = {c["metric"]: c for c in checks if c["scope"] == "overall"}
    # The drift-loop champion exists, so every gated metric was compared overall.
    assert set(overall) == {rule.name for rule in policy.metrics}, checks
    for rule in policy.metrics:
        check = overall[rule.name]
        sign = 1 if rule.higher_is_better else -1
        delta = sign * (check["challenger"] - check["champion"])
        assert check["delta"] == pytest.approx(delta, abs=1e-5)
        regressed = delta < -rule.tolerance - 1e-9
        assert (check["verdict"] == "regressed") == regressed, check
    primary = overall[policy.primary_metric]
    short = primary["delta"] < policy.min_improvement - 1e-9
    judged_ok = all(c["verdict"] in ("ok", "undefined") for c in checks)
    assert judged_ok == (not short and not any(c["verdict"] == "regressed" for c in checks))
    promoted = tags["gate.promote"] == "true"
    assert promoted == judged_ok, tags["gate.reason"]
    champion = client.get_model_version_by_alias(MODEL, "champion").version
    assert (str(champion) == str(newest.version)) == promoted
    threshold = float(tags["decision_threshold"])
    assert report["thresholds"]["challenger"] == pytest.approx(threshold)
    assert 0 < threshold < 1
