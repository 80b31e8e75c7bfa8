"""A third use case, written into a temp folder, runs through the whole platform untouched.

Registered through DRIFTLOOP_USECASES only (no edit of any generic module): its raw rows go
through the Spark job (row checks by its contract, features by its module), a one-trial search
over the family it brings, registration behind the gate, and serving under /v1/tiny/ with its
own request model, reason codes and 422 for rows outside the contract.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from core.usecases import EXTRA_REGISTRIES_ENV, get_use_case
from tests.tiny_usecase import write_tiny_use_case

pytestmark = [pytest.mark.slow, pytest.mark.spark]


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    registry = write_tiny_use_case(tmp_path / "plugin")
    monkeypatch.setenv(EXTRA_REGISTRIES_ENV, str(registry.parent))
    monkeypatch.setenv("DRIFTLOOP_MODEL_NAME_TINY", f"tiny-{uuid.uuid4().hex[:8]}")
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield "tiny"
    for name in ("tiny_features", "tiny_contract", "tiny_families"):
        sys.modules.pop(name, None)


def _raw_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(4.0, 1.2, n), 2).clip(0, 9_000)
    channel = rng.choice(["web", "shop"], n)
    logit = 1.2 * (np.log1p(amount) - 4.0) + np.where(channel == "web", 0.8, -0.8)
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({"amount": amount, "channel": channel, "label": label})
    bad = pd.DataFrame(
        {"amount": [-5.0, 50_000.0, 10.0], "channel": ["web", "shop", "fax"], "label": [0, 1, 0]}
    )
    return pd.concat([frame, bad], ignore_index=True)


def test_third_use_case_end_to_end(spark, tiny: str, tmp_path: Path, driftloop_home: Path) -> None:
    from jobs.spark.featurize import featurize, read_features
    from serving.app import create_app
    from serving.config import ServingSettings
    from training.promote import register_and_gate
    from training.tune import run_search

    raw = _raw_rows(600, seed=3)
    raw_path = tmp_path / "tiny.csv"
    raw.to_csv(raw_path, index=False)

    # Spark: the contract's PredictRequest quarantines the three bad rows, features by module.
    stats = featurize(spark, str(raw_path), str(tmp_path / "run"), use_case=tiny)
    assert stats["quarantined"]["contract_violation"] == 3
    assert stats["rows_read"] == len(raw)
    quarantine = pd.read_parquet(tmp_path / "run" / "quarantine")
    violations = quarantine[quarantine["reason"] == "contract_violation"]
    assert sorted(violations["channel"]) == ["fax", "shop", "web"]
    assert violations["detail"].str.contains("amount|channel").all()
    features = read_features(tmp_path / "run", use_case=tiny)
    assert list(features.columns[-3:]) == ["log_amount", "is_web", "amount_missing"]

    # Search: one trial of the family the use case brings, refit, test split, MLflow run.
    features_dir = str(tmp_path / "run" / "features")
    outcome = run_search(
        features_dir,
        use_case=tiny,
        budgets={"tiny_logreg": {"n_trials": 1, "timeout_s": 120}},
        study_prefix=f"tiny-{uuid.uuid4().hex[:8]}",
    )
    assert outcome["best"]["family"] == "tiny_logreg"
    assert outcome["test_metrics"]["roc_auc"] > 0.6

    # Registry: the use case's model name and contract version, promoted by the gate.
    gated = register_and_gate(outcome["refit"]["run_id"], None, features_dir, use_case=tiny)
    assert gated["promoted"] is True
    model_name = get_use_case(tiny).model_name

    settings = ServingSettings(
        mlflow_tracking_uri=f"sqlite:///{driftloop_home / 'mlflow' / 'mlflow.db'}",
        use_cases=tiny,
        load_retry_seconds=0.1,
        startup_wait_seconds=60.0,
        gc_freeze=False,
        prediction_log_url=f"sqlite:///{tmp_path / 'predictions.db'}",
    )
    with TestClient(create_app(settings)) as client:
        for _ in range(100):
            info = client.get(f"/v1/{tiny}/model-info")
            if info.status_code == 200:
                break
            import time

            time.sleep(0.2)
        assert info.status_code == 200, info.text
        assert info.json()["name"] == model_name
        assert info.json()["feature_contract_version"] == "tiny-v1"

        row = {"amount": 250.0, "channel": "web"}
        answer = client.post(f"/v1/{tiny}/predict?return_features=true", json=row)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["label_name"] in {"ok", "bad"}
        assert [r["feature"] for r in body["reasons"]]  # the use case's explain hook ran
        assert body["features"]["is_web"] == 1

        # Same features and probability as the Spark path computes for the same raw values.
        import mlflow.sklearn

        model = mlflow.sklearn.load_model(f"models:/{model_name}/{gated['version']}")
        tiny_features = get_use_case(tiny).features
        expected = model.predict_proba(tiny_features.build_features(pd.DataFrame([row])))[0, 1]
        assert body["probability"] == float(expected)

        batch = client.post(f"/v1/{tiny}/predict/batch", json={"rows": [row, row | {"amount": 1}]})
        assert batch.status_code == 200, batch.text
        assert len(batch.json()["predictions"]) == 2
        assert batch.json()["predictions"][0]["probability"] == body["probability"]

        # Outside the contract: 422, as ingestion quarantined the same rows.
        for bad in ({"amount": -5.0, "channel": "web"}, {"amount": 10.0, "channel": "fax"}):
            assert client.post(f"/v1/{tiny}/predict", json=bad).status_code == 422
        docs = client.get("/openapi.json").json()
        schema = docs["paths"][f"/v1/{tiny}/predict"]["post"]["requestBody"]["content"]
        assert schema["application/json"]["schema"]["properties"]["amount"]["maximum"] == 10_000.0

        # Its traffic is in its own prediction-log table, and takes feedback like any other.
        label = client.post(
            f"/v1/{tiny}/feedback", json={"request_id": body["request_id"], "label": 1}
        )
        assert label.status_code == 201, label.text
    from datetime import UTC, datetime, timedelta

    from serving.prediction_log import read_predictions

    now = datetime.now(UTC)
    logged = read_predictions(
        f"sqlite:///{tmp_path / 'predictions.db'}",
        now - timedelta(hours=1),
        now + timedelta(seconds=1),
        use_case=tiny,
    )
    assert len(logged) == 3
    assert logged["amount"].tolist() == [250.0, 250.0, 1.0]
    assert logged["channel"].tolist() == ["web"] * 3
    assert logged["is_web"].tolist() == [1, 1, 1]
    assert logged["feedback_label"].tolist()[0] == 1
