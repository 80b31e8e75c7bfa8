"""The training DAG end to end with dag.test(): synthetic data in, a served champion out."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.spark]

MODEL = "dagtest-review-sentiment"


@pytest.fixture(scope="module")
def training_run(airflow_db: Path, driftloop_home: Path):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(Path(__file__).parents[2] / "airflow" / "dags")).dags[
        "training_pipeline"
    ]
    run = dag.test(
        run_conf={
            "families": ["logreg", "naive_bayes"],
            "n_trials": 3,
            "family_timeout_s": 120,
            "data_path": "",
            "synthetic_rows": 1500,
            "model_name": MODEL,
            "reason": "test",
        }
    )
    return run


def test_run_succeeds_with_every_task(training_run) -> None:
    assert str(training_run.state) in ("success", "DagRunState.SUCCESS")
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in training_run.get_task_instances()}
    assert {task for task, _ in states} == {
        "ingest",
        "validate_raw",
        "featurize",
        "plan_search",
        "tune",
        "select_best",
        "refit",
        "evaluate",
        "register",
    }
    assert {(t, i) for t, i in states if t == "tune"} == {("tune", 0), ("tune", 1)}
    assert all(s.endswith("success") for s in states.values()), states


def test_champion_registered_with_lineage(training_run) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(MODEL, "champion")
    from contracts.reviews import FEATURE_CONTRACT_VERSION

    assert version.tags["feature_contract_version"] == FEATURE_CONTRACT_VERSION
    assert len(version.tags["data_sha256"]) == 64
    run = client.get_run(version.run_id)
    assert run.data.tags["trigger_reason"] == "test"
    assert run.data.tags["data_docs"].startswith("file://")
    assert Path(run.data.tags["data_docs"].removeprefix("file://")).exists()
    assert run.data.metrics["test_roc_auc"] > 0.8
    # one parent run for the pipeline run, a child run per family, the refit under it
    parent_id = run.data.tags["mlflow.parentRunId"]
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    assert len(children) >= 3
    # the drift check's reference profile travels with the model
    artifacts = [a.path for a in client.list_artifacts(version.run_id, "reference")]
    assert artifacts == ["reference/profile.parquet"]


def test_api_serves_the_champion(training_run) -> None:
    import mlflow
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.config import ServingSettings

    version = mlflow.MlflowClient().get_model_version_by_alias(MODEL, "champion").version
    with TestClient(create_app(ServingSettings(model_name=MODEL))) as client:
        assert client.get("/ready").status_code == 200
        good = client.post("/predict", json={"text": "A wonderful, brilliant film. Loved it!"})
        bad = client.post("/predict", json={"text": "Terrible, boring and awful. Hated it."})
    assert good.status_code == bad.status_code == 200
    assert good.json()["model_version"] == str(version)
    assert good.json()["label"] == 1 and bad.json()["label"] == 0
