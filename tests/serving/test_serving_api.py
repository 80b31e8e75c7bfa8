"""The prediction API against a real registered model in a real (SQLite) MLflow store."""

from __future__ import annotations

import re
import socket
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sklearn.pipeline import Pipeline

from contracts.reviews import FEATURE_CONTRACT_VERSION, MAX_TEXT_CHARS, RAW_TEXT
from features.reviews import build_features
from serving.app import FeatureSchemaError, check_feature_schema, create_app
from serving.config import ServingSettings

TEXTS = [
    "An absolute delight from start to finish, I loved every minute!",
    "Dull, badly acted and far too long. I want those two hours back.",
    "It was NOT terrible... <br /><br />but sooo slow?? Don\x92t bother &amp; skip",
    "caf\u00e9 \u2014 \U0001f600 \u200b ok",
    "a",
]


def _features(text: str) -> pd.DataFrame:
    return build_features(pd.DataFrame({RAW_TEXT: [text]}))


def _wait_for(client: TestClient, path: str, check: Any, timeout: float = 60.0) -> Any:
    """Poll `path` until `check(response)` holds; the deadline only bounds a hung test."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(path)
        if check(response):
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never satisfied the check; last: {response.text}")
        time.sleep(0.05)


# ---- predictions ----------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_predict_returns_the_in_process_pipeline_probability(
    served: TestClient, tiny_pipeline: Pipeline, text: str
) -> None:
    expected = float(tiny_pipeline.predict_proba(_features(text))[0, 1])

    response = served.post("/predict", json={"text": text})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["probability"] == expected
    assert body["label"] == int(expected >= 0.5)
    assert body["label_name"] == ("positive" if body["label"] == 1 else "negative")
    assert body["model_version"] == "1"
    assert "features" not in body


def test_predict_separates_clear_positive_from_clear_negative(served: TestClient) -> None:
    positive = served.post("/predict", json={"text": TEXTS[0]}).json()
    negative = served.post("/predict", json={"text": TEXTS[1]}).json()
    assert positive["label_name"] == "positive"
    assert negative["label_name"] == "negative"


@pytest.mark.parametrize("text", TEXTS)
def test_return_features_gives_exactly_what_build_features_computes(
    served: TestClient, text: str
) -> None:
    expected = _features(text).to_dict("records")[0]

    response = served.post("/predict", params={"return_features": "true"}, json={"text": text})

    assert response.status_code == 200, response.text
    features = response.json()["features"]
    assert features == expected
    assert {k: type(v) for k, v in features.items()} == {k: type(v) for k, v in expected.items()}
    assert isinstance(features["n_chars"], int)
    assert isinstance(features["upper_ratio"], float)
    assert isinstance(features["text_clean"], str)


# ---- bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "error_type"),
    [
        ({}, "text", "missing"),
        ({"text": None}, "text", "string_type"),
        ({"text": 123}, "text", "string_type"),
        ({"text": ["a"]}, "text", "string_type"),
        ({"text": ""}, "text", "string_too_short"),
        ({"text": " \n\t "}, "text", "value_error"),
        ({"text": "x" * (MAX_TEXT_CHARS + 1)}, "text", "string_too_long"),
        ({"text": "fine", "rating": 5}, "rating", "extra_forbidden"),
    ],
    ids=["missing", "null", "number", "list", "empty", "blank", "too-long", "unknown-field"],
)
def test_bad_bodies_are_422_naming_the_field(
    served: TestClient, body: dict[str, Any], field: str, error_type: str
) -> None:
    response = served.post("/predict", json=body)

    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"][-1] == field and e["type"] == error_type for e in errors), errors


@pytest.mark.parametrize(
    "raw", [b"{not json", b"[1, 2]", b'"just a string"'], ids=["broken", "list", "string"]
)
def test_non_object_bodies_are_422(served: TestClient, raw: bytes) -> None:
    response = served.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_configured_text_limit_is_enforced_as_422(champion_name: str, settings_for: Any) -> None:
    with TestClient(create_app(settings_for(champion_name, max_text_chars=40))) as client:
        assert client.post("/predict", json={"text": "y" * 40}).status_code == 200
        response = client.post("/predict", json={"text": "y" * 41})
    assert response.status_code == 422
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "text"]
    assert "40" in error["msg"]


@settings(max_examples=40, deadline=None)
@given(text=st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=300))
def test_any_text_is_answered_never_500(served: TestClient, text: str) -> None:
    response = served.post("/predict", json={"text": text})
    assert response.status_code == (200 if text.strip() else 422), response.text


# ---- model lifecycle ---------------------------------------------------------------


def test_no_champion_is_503_until_the_background_retry_loads_one(
    model_name: str, register: Any, settings_for: Any
) -> None:
    app = create_app(settings_for(model_name, load_retry_seconds=0.1))
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert model_name in ready.json()["detail"]
        assert "champion" in ready.json()["detail"]
        predict = client.post("/predict", json={"text": "great film"})
        assert predict.status_code == 503
        assert "no model loaded" in predict.json()["detail"]
        assert client.get("/model-info").status_code == 503
        assert client.post("/predict", json={"text": ""}).status_code == 422

        version = register(model_name)

        ready = _wait_for(client, "/ready", lambda r: r.status_code == 200)
        assert ready.json() == {"status": "ready", "model_version": version}
        assert client.post("/predict", json={"text": "great film"}).status_code == 200


@pytest.mark.parametrize("contract", ["reviews-v0", None], ids=["other-version", "untagged"])
def test_model_with_another_feature_contract_is_refused(
    model_name: str, register: Any, settings_for: Any, contract: str | None
) -> None:
    register(model_name, contract=contract)

    with TestClient(create_app(settings_for(model_name))) as client:
        ready = client.get("/ready")
        predict = client.post("/predict", json={"text": "great film"})

    assert ready.status_code == 503
    detail = ready.json()["detail"]
    assert "refused" in detail
    assert FEATURE_CONTRACT_VERSION in detail
    assert (contract or "feature_contract_version") in detail
    assert predict.status_code == 503


def test_unreachable_registry_still_starts_with_ready_503(
    model_name: str, settings_for: Any
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    settings = settings_for(
        model_name,
        mlflow_tracking_uri=f"http://127.0.0.1:{closed_port}",
        registry_max_retries=0,
        load_retry_seconds=30,
    )

    with TestClient(create_app(settings)) as client:
        health = client.get("/health")
        ready = client.get("/ready")

    assert health.status_code == 200
    assert ready.status_code == 503
    assert f"127.0.0.1:{closed_port}" in ready.json()["detail"]
    assert "is the MLflow server up" in ready.json()["detail"]


def test_model_info_describes_the_loaded_version(
    served: TestClient, champion_name: str, logged_model: Any
) -> None:
    info = served.get("/model-info")

    assert info.status_code == 200
    body = info.json()
    assert body["name"] == champion_name
    assert body["alias"] == "champion"
    assert body["version"] == "1"
    assert body["run_id"] == logged_model.run_id
    assert body["feature_contract_version"] == FEATURE_CONTRACT_VERSION
    loaded_at = datetime.fromisoformat(body["loaded_at"])
    assert timedelta(0) <= datetime.now(UTC) - loaded_at < timedelta(hours=1)
    assert body["load_seconds"] > 0
    assert body["last_reload_error"] is None
    # An untagged version serves at the configured default threshold.
    assert body["decision_threshold"] == 0.5


def test_the_versions_decision_threshold_labels_predictions_and_shows_in_model_info(
    register: Any, model_name: str, settings_for: Any, tiny_pipeline: Pipeline
) -> None:
    from mlflow import MlflowClient

    version = register(model_name)
    probabilities = [float(tiny_pipeline.predict_proba(_features(t))[0, 1]) for t in TEXTS]
    # A threshold between two of the probabilities: labels differ from the 0.5 ones.
    threshold = round(sorted(probabilities)[1] + 1e-6, 8)
    assert [p >= threshold for p in probabilities] != [p >= 0.5 for p in probabilities]
    client = MlflowClient(tracking_uri=settings_for(model_name).mlflow_tracking_uri)
    client.set_model_version_tag(model_name, version, "decision_threshold", repr(threshold))
    with TestClient(create_app(settings_for(model_name))) as served_tagged:
        assert served_tagged.get("/model-info").json()["decision_threshold"] == threshold
        for text, probability in zip(TEXTS, probabilities, strict=True):
            body = served_tagged.post("/predict", json={"text": text}).json()
            assert body["label"] == int(probability >= threshold)
        batch = served_tagged.post("/predict/batch", json={"texts": TEXTS}).json()
        assert [p["label"] for p in batch["predictions"]] == [
            int(p >= threshold) for p in probabilities
        ]
        # The metrics count the labels the API answered, at the version's threshold.
        positives = 2 * sum(p >= threshold for p in probabilities)
        counted = _predicted_count(served_tagged.get("/metrics").text, "1", version)
        assert counted == positives != 2 * sum(p >= 0.5 for p in probabilities)


def _predicted_count(exposition: str, label: str, version: str) -> float:
    wanted = f'label="{label}",model_version="{version}",use_case="reviews"'
    for line in exposition.splitlines():
        if line.startswith("driftloop_predictions_total{") and wanted in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_alias_move_is_picked_up_and_a_refused_successor_keeps_the_old_model(
    model_name: str, register: Any, settings_for: Any
) -> None:
    register(model_name)
    app = create_app(settings_for(model_name, reload_interval_seconds=0.1))
    with TestClient(app) as client:
        assert client.get("/model-info").json()["version"] == "1"

        register(model_name)
        _wait_for(client, "/model-info", lambda r: r.json()["version"] == "2")

        register(model_name, contract="reviews-v0")
        info = _wait_for(client, "/model-info", lambda r: r.json()["last_reload_error"])
        assert info.json()["version"] == "2"
        assert "reviews-v0" in info.json()["last_reload_error"]
        assert client.get("/ready").status_code == 200
        assert client.post("/predict", json={"text": "fine"}).json()["model_version"] == "2"


# ---- request ids, docs, settings ------------------------------------------------------


def test_request_id_is_echoed_in_header_and_body(served: TestClient) -> None:
    response = served.post("/predict", json={"text": "ok"}, headers={"X-Request-ID": "req-42.a"})
    assert response.headers["x-request-id"] == "req-42.a"
    assert response.json()["request_id"] == "req-42.a"


def test_request_id_is_generated_when_absent_or_unsafe(served: TestClient) -> None:
    first = served.post("/predict", json={"text": "ok"})
    second = served.post("/predict", json={"text": "ok"}, headers={"X-Request-ID": "a b<script>"})
    for response in (first, second):
        request_id = response.json()["request_id"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id), request_id
        assert response.headers["x-request-id"] == request_id
    assert first.json()["request_id"] != second.json()["request_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", served.get("/health").headers["x-request-id"])


def test_openapi_documents_the_endpoints(served: TestClient) -> None:
    assert served.get("/docs").status_code == 200
    spec = served.get("/openapi.json").json()
    assert {"/predict", "/health", "/ready", "/model-info"} <= set(spec["paths"])
    predict = spec["paths"]["/predict"]["post"]
    assert {"200", "422", "503"} <= set(predict["responses"])
    assert predict["parameters"][0]["name"] == "return_features"


def test_settings_come_from_driftloop_env_and_mlflow_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_PORT", "9123")
    monkeypatch.setenv("DRIFTLOOP_WORKERS", "3")
    monkeypatch.setenv("DRIFTLOOP_MODEL_NAME", "some-model")
    monkeypatch.setenv("DRIFTLOOP_RELOAD_INTERVAL_SECONDS", "45")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://registry.internal:5000")

    loaded = ServingSettings()

    assert (loaded.port, loaded.workers, loaded.model_name) == (9123, 3, "some-model")
    assert loaded.reload_interval_seconds == 45
    assert loaded.mlflow_tracking_uri == "http://registry.internal:5000"
    assert loaded.model_alias == "champion"
    assert loaded.host == "127.0.0.1"


def test_text_limit_above_the_contract_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_MAX_TEXT_CHARS", str(MAX_TEXT_CHARS + 1))
    with pytest.raises(ValidationError, match="DRIFTLOOP_MAX_TEXT_CHARS"):
        ServingSettings()


def test_startup_check_rejects_features_that_break_the_contract(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check_feature_schema()

    def broken(df: pd.DataFrame, text_col: str = "text") -> pd.DataFrame:
        frame = build_features(df, text_col)
        frame["n_chars"] = frame["n_chars"].astype("float64")
        return frame

    monkeypatch.setattr("features.reviews.build_features", broken)
    with pytest.raises(FeatureSchemaError, match="n_chars"):
        check_feature_schema()


# ---- figures ------------------------------------------------------------------------


def test_print_single_request_latency(served: TestClient) -> None:
    """Median latency of one /predict through TestClient (printed, not asserted)."""
    text = TEXTS[2]
    for _ in range(20):
        served.post("/predict", json={"text": text})
    samples = []
    for _ in range(200):
        started = time.perf_counter()
        response = served.post("/predict", json={"text": text})
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200
    samples.sort()
    print(
        f"\n/predict via TestClient, 200 requests: median {statistics.median(samples) * 1e3:.2f} ms,"
        f" p90 {samples[179] * 1e3:.2f} ms"
    )
