"""Training-serving skew for every registered tabular use case (plus one added from a folder).

Rows are drawn by Hypothesis from the use case's own `PredictRequest` JSON schema (ranges and
allowed codes), so the test needs nothing written for a particular use case. Rows within the
contract go through the Spark job (CSV text, as files arrive) and through
`POST /v1/<use case>/predict` (JSON): features and probabilities must be identical. Rows just
outside it (one field past its bound or off its code list) must be quarantined by the job and
answered with 422 by the API, the same rows on both sides.
"""

from __future__ import annotations

import math
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from core.usecases import EXTRA_REGISTRIES_ENV, get_use_case, load_registry
from tests.tiny_usecase import write_tiny_use_case

pytestmark = [pytest.mark.spark, pytest.mark.slow]

N_INSIDE = 120
TABULAR = sorted(name for name, uc in load_registry().items() if uc.kind == "tabular")


@pytest.fixture(params=[*TABULAR, "tiny"])
def use_case(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv(f"DRIFTLOOP_MODEL_NAME_{request.param.upper()}", f"skew-{uuid.uuid4().hex}")
    if request.param == "tiny":
        registry = write_tiny_use_case(tmp_path / "plugin")
        monkeypatch.setenv(EXTRA_REGISTRIES_ENV, str(registry.parent))
        monkeypatch.setattr(sys, "path", list(sys.path))
    yield request.param
    for name in ("tiny_features", "tiny_contract", "tiny_families"):
        sys.modules.pop(name, None)


def _field_strategy(spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "enum" in spec:
        return st.sampled_from(spec["enum"])
    low, high = spec.get("minimum", -1e6), spec.get("maximum", 1e6)
    if spec.get("type") == "integer":
        return st.integers(int(low), int(high))
    return st.floats(low, high, allow_nan=False, allow_infinity=False).map(lambda x: round(x, 4))


def _outside(spec: dict[str, Any]) -> Any:
    """A value just outside the field's contract (past a bound, or off the code list)."""
    if "maximum" in spec:
        return spec["maximum"] + 1
    if "minimum" in spec:
        return spec["minimum"] - 1
    return "not-an-allowed-code"


def _draw_rows(schema: dict[str, Any], n: int) -> list[dict[str, Any]]:
    properties = schema["properties"]
    strategy = st.lists(
        st.fixed_dictionaries({k: _field_strategy(v) for k, v in properties.items()}),
        min_size=n,
        max_size=n,
        unique_by=lambda row: tuple(sorted(row.items())),  # copies would be deduplicated
    )
    drawn: list[dict[str, Any]] = []

    @seed(20261130)
    @settings(max_examples=1, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(rows: list[dict[str, Any]]) -> None:
        drawn[:] = rows

    draw()
    return drawn


def _csv_text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def test_spark_and_api_agree_on_tabular_rows(
    use_case: str, spark, tmp_path: Path, driftloop_home: Path
) -> None:
    import mlflow
    import mlflow.sklearn
    from fastapi.testclient import TestClient
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from jobs.spark.featurize import featurize, read_features
    from serving.app import create_app
    from serving.config import ServingSettings
    from training import mlflow_utils
    from training.zoo import layout_for

    uc = get_use_case(use_case)
    contract, feats = uc.contract, uc.features
    raw_columns = list(contract.RAW_COLUMNS)
    schema = contract.PredictRequest.model_json_schema()
    inside = _draw_rows(schema, N_INSIDE)
    outside = []
    for i, name in enumerate(raw_columns):
        row = dict(inside[i % len(inside)])
        row[name] = _outside(schema["properties"][name])
        outside.append(row)

    rows = inside + outside
    labels = np.random.default_rng(1).integers(0, 2, len(rows))
    raw = pd.DataFrame(
        {c: [_csv_text(r[c]) for r in rows] for c in raw_columns} | {contract.RAW_LABEL: labels}
    )
    raw_path = tmp_path / "raw.csv"
    raw.to_csv(raw_path, index=False)
    stats = featurize(spark, str(raw_path), str(tmp_path / "out"), use_case=use_case)

    # Outside the contract: quarantined by the job, for that reason, exactly those rows.
    quarantine = pd.read_parquet(tmp_path / "out" / "quarantine")
    violations = quarantine[quarantine["reason"] == "contract_violation"]
    assert sorted(violations["source_row"]) == list(range(len(inside), len(rows))), violations
    assert stats["quarantined"]["contract_violation"] == len(outside)

    spark_rows = read_features(tmp_path / "out", use_case=use_case)
    # Raw columns that are also features are written once, as the feature: key on the others.
    key_columns = [c for c in raw_columns if c not in set(feats.FEATURE_COLUMNS)]
    key = pd.Series(
        ["\x1f".join(map(str, r)) for r in spark_rows[key_columns].itertuples(index=False)],
        index=spark_rows.index,
    )
    by_key = spark_rows[~key.duplicated(keep=False)].set_index(key[~key.duplicated(keep=False)])

    # A model on the Spark features, registered with the use case's contract, served.
    layout = layout_for(use_case)
    model = Pipeline(
        [
            ("features", ColumnTransformer([("num", StandardScaler(), list(layout.numeric))])),
            ("classifier", LogisticRegression(max_iter=500)),
        ]
    ).fit(spark_rows[list(feats.FEATURE_COLUMNS)], spark_rows[contract.RAW_LABEL])
    mlflow_utils.configure()
    with mlflow.start_run(experiment_id=mlflow_utils.get_or_create_experiment("skew-tabular")):
        info = mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle")
    version = mlflow.register_model(info.model_uri, uc.model_name)
    client = mlflow.MlflowClient()
    client.set_model_version_tag(
        uc.model_name,
        version.version,
        "feature_contract_version",
        contract.FEATURE_CONTRACT_VERSION,
    )
    client.set_registered_model_alias(uc.model_name, "champion", version.version)

    settings_ = ServingSettings(
        mlflow_tracking_uri=mlflow.get_tracking_uri(),
        use_cases=use_case,
        load_retry_seconds=0.1,
        gc_freeze=False,
        prediction_log_enabled=False,
    )
    with TestClient(create_app(settings_)) as api:
        for _ in range(200):
            if api.get(f"/v1/{use_case}/model-info").status_code == 200:
                break
            import time

            time.sleep(0.1)
        compared = 0
        for i, row in enumerate(inside):
            row_key = "\x1f".join(_csv_text(row[c]) for c in key_columns)
            if row_key not in by_key.index:
                continue  # a duplicate or a label conflict among the drawn rows (not a skew)
            answer = api.post(f"/v1/{use_case}/predict?return_features=true", json=row)
            assert answer.status_code == 200, (i, row, answer.text)
            expected = by_key.loc[row_key]
            for name in feats.FEATURE_COLUMNS:
                got, want = answer.json()["features"][name], expected[name]
                same = (
                    math.isclose(got, want, rel_tol=0, abs_tol=1e-12)
                    if isinstance(got, float)
                    else got == want
                )
                assert same, f"row {i}, feature {name}: API {got!r} vs Spark {want!r}"
            spark_frame = pd.DataFrame([expected[list(feats.FEATURE_COLUMNS)]]).astype(
                feats.FEATURE_DTYPES
            )
            spark_probability = model.predict_proba(spark_frame)[0, 1]
            assert answer.json()["probability"] == float(spark_probability), i
            compared += 1
        assert compared >= N_INSIDE * 0.9
        for row in outside:
            assert api.post(f"/v1/{use_case}/predict", json=row).status_code == 422, row
