"""The training DAG with `use_case=credit` (dag.test()): credit clients with bad rows in, the
bad rows quarantined with reason codes, a credit champion out, served with reason codes."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.spark]

MODEL = "dagtest-credit-default"
BAD = {3: ("EDUCATION", "9"), 7: ("LIMIT_BAL", "0"), 11: ("PAY_AMT2", "-10")}


@pytest.fixture(scope="module")
def clients_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from synthetic.credit import generate

    frame = generate(1500, seed=21).astype(str)
    for row, (column, value) in BAD.items():
        frame.loc[row, column] = value
    path = tmp_path_factory.mktemp("credit") / "clients.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def training_run(airflow_db: Path, driftloop_home: Path, clients_file: Path):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(Path(__file__).parents[2] / "airflow" / "dags")).dags[
        "training_pipeline"
    ]
    return dag.test(
        run_conf={
            "use_case": "credit",
            "data_path": str(clients_file),
            "source": "infer",
            "families": ["logreg"],
            "n_trials": 2,
            "family_timeout_s": 120,
            "model_name": MODEL,
            "reason": "test",
        }
    )


def _xcom(run, task_id: str):
    ti = next(t for t in run.get_task_instances() if t.task_id == task_id)
    return ti.xcom_pull(task_ids=task_id)


def test_every_task_succeeds_and_bad_rows_are_quarantined(training_run) -> None:
    states = {ti.task_id: str(ti.state) for ti in training_run.get_task_instances()}
    assert all(s.endswith("success") for s in states.values()), states
    report = _xcom(training_run, "validate_raw")
    assert report["use_case"] == "credit"
    assert report["per_source"].keys() == {"credit_synthetic"}  # inferred: the use case's layout
    quarantined = pd.read_parquet(report["quarantine_path"]).set_index("source_row")
    assert quarantined["reason"].to_dict() == {
        3: "code_not_allowed",
        7: "value_out_of_range",
        11: "value_out_of_range",
    }
    assert report["rows_accepted"] == 1500 - len(BAD)
    featurized = _xcom(training_run, "featurize")
    assert featurized["use_case"] == "credit"
    assert featurized["stats"]["use_case"] == "credit"


def test_credit_champion_with_lineage_and_reasons(training_run) -> None:
    import mlflow
    from fastapi.testclient import TestClient

    from contracts.credit import FEATURE_CONTRACT_VERSION, PredictRequest
    from serving.app import create_app
    from serving.config import ServingSettings

    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert version.tags["feature_contract_version"] == FEATURE_CONTRACT_VERSION
    assert client.get_run(version.run_id).data.tags["trigger_reason"] == "test"
    profile = mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path="reference/profile.parquet"
    )
    from features.credit import FEATURE_COLUMNS

    assert set(FEATURE_COLUMNS) <= set(pd.read_parquet(profile).columns)

    example = {name: field.examples[0] for name, field in PredictRequest.model_fields.items()}
    settings = ServingSettings(
        use_cases="credit",
        load_retry_seconds=0.1,
        startup_wait_seconds=60.0,
        gc_freeze=False,
        prediction_log_enabled=False,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DRIFTLOOP_MODEL_NAME_CREDIT", MODEL)
        with TestClient(create_app(settings)) as api:
            for _ in range(150):
                if api.get("/v1/credit/model-info").status_code == 200:
                    break
                time.sleep(0.2)
            answer = api.post("/v1/credit/predict", json=example)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == str(version.version)
    assert 1 <= len(body["reasons"]) <= 3
