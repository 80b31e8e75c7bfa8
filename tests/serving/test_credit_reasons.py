"""POST /v1/credit/predict answers with the top three reason codes of the served champion."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from contracts.credit import FEATURE_CONTRACT_VERSION, RAW_FIELDS
from contracts.sources import load_sources, source_columns
from explain.contributions import feature_contributions
from features.credit import FEATURE_COLUMNS, RAW_COLUMNS, build_features
from synthetic.credit import generate


@pytest.mark.slow
@pytest.mark.parametrize("family", ["logreg", "lightgbm"])
def test_credit_prediction_carries_the_largest_positive_contributions(
    family: str, driftloop_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import mlflow.sklearn
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.config import ServingSettings
    from training import mlflow_utils
    from training.zoo import build_pipeline, layout_for, search_spaces_for, to_servable

    model_name = f"credit-reasons-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DRIFTLOOP_MODEL_NAME_CREDIT", model_name)
    entry = load_sources()["credit_synthetic"]
    mapping = source_columns(entry, RAW_COLUMNS)
    clients = generate(1200, seed=21)
    raw = clients.rename(columns={f: c for c, f in mapping.items()})
    features = build_features(raw)
    params = {"n_estimators": 60} if family == "lightgbm" else None
    model = build_pipeline(
        family, params, spaces=search_spaces_for("credit"), layout=layout_for("credit")
    ).fit(features, clients[entry["label_column"]])
    model = to_servable(model)

    mlflow_utils.configure()
    with mlflow.start_run(experiment_id=mlflow_utils.get_or_create_experiment("credit-reasons")):
        info = mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle")
    version = mlflow.register_model(info.model_uri, model_name)
    client = mlflow.MlflowClient()
    client.set_model_version_tag(
        model_name, version.version, "feature_contract_version", FEATURE_CONTRACT_VERSION
    )
    client.set_registered_model_alias(model_name, "champion", version.version)

    settings = ServingSettings(
        mlflow_tracking_uri=mlflow.get_tracking_uri(),
        use_cases="credit",
        load_retry_seconds=0.1,
        gc_freeze=False,
        prediction_log_enabled=False,
    )
    rows = raw[list(RAW_FIELDS)].head(25).to_dict("records")
    with TestClient(create_app(settings)) as api:
        for _ in range(300):
            if api.get("/v1/credit/model-info").status_code == 200:
                break
            time.sleep(0.1)
        seen_three = 0
        for row in rows:
            answer = api.post("/v1/credit/predict", json=row)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            frame = build_features(pd.DataFrame([row]))[list(FEATURE_COLUMNS)]
            assert body["probability"] == pytest.approx(model.predict_proba(frame)[0, 1])
            contributions = feature_contributions(model, frame)
            ranked = sorted(
                (
                    (value, name)
                    for value, name in zip(
                        contributions.values[0], contributions.features, strict=True
                    )
                    if value > 0
                ),
                reverse=True,
            )
            reasons = body["reasons"]
            assert [r["feature"] for r in reasons] == [name for _, name in ranked[:3]]
            assert [r["contribution"] for r in reasons] == pytest.approx(
                [value for value, _ in ranked[:3]]
            )
            seen_three += len(reasons) == 3
        assert seen_three >= len(rows) // 2
