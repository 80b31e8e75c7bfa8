"""Prometheus metrics and structured JSON logs."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.logs import JsonFormatter, request_id_var

UC_V1 = 'model_version="1",use_case="reviews"'


def _sample(text: str, name: str, labels: str = "") -> float:
    """The value of one sample line `name{labels} value` in exposition text."""
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    match = re.search(r"^" + pattern + r"$", text, flags=re.MULTILINE)
    assert match, f"no sample {name}{{{labels}}} in:\n{text[:3000]}"
    return float(match.group(1))


def test_metrics_count_requests_batches_scores_labels_and_the_model(
    champion_name: str, settings_for: Any, tmp_path: Path
) -> None:
    settings = settings_for(champion_name, prediction_log_url=f"sqlite:///{tmp_path / 'p.db'}")
    with TestClient(create_app(settings)) as client:
        answers = [
            client.post("/predict", json={"text": t}).json()
            for t in ["Wonderful, loved it!", "Awful and boring.", "Great acting!"]
        ]
        client.post("/predict/batch", json={"texts": ["superb", "dreadful"]})
        client.post("/predict", json={"text": ""})
        client.get("/nowhere")
        text = client.get("/metrics").text

    assert (
        _sample(
            text, "driftloop_http_requests_total", 'method="POST",route="/predict",status="200"'
        )
        == 3
    )
    assert (
        _sample(
            text, "driftloop_http_requests_total", 'method="POST",route="/predict",status="422"'
        )
        == 1
    )
    assert (
        _sample(
            text, "driftloop_http_requests_total", 'method="GET",route="unmatched",status="404"'
        )
        == 1
    )
    assert _sample(text, "driftloop_http_request_duration_seconds_count", 'route="/predict"') == 4
    assert _sample(text, "driftloop_batch_size_rows_sum", 'use_case="reviews"') == 5
    assert _sample(text, "driftloop_prediction_score_count", UC_V1) == 5
    positives = sum(a["label"] for a in answers)
    one, zero = f'label="1",{UC_V1}', f'label="0",{UC_V1}'
    assert _sample(text, "driftloop_predictions_total", one) >= positives
    assert (
        _sample(text, "driftloop_predictions_total", zero)
        + _sample(text, "driftloop_predictions_total", one)
        == 5
    )
    assert _sample(text, "driftloop_model_info", f'name="{champion_name}",version="1"') == 1
    assert _sample(text, "driftloop_model_reloads_total", 'outcome="loaded"') == 1
    assert _sample(text, "driftloop_model_load_duration_seconds", 'use_case="reviews"') > 0
    assert _sample(text, "driftloop_model_loaded_timestamp_seconds", 'use_case="reviews"') > 1.7e9
    assert _sample(text, "driftloop_prediction_log_queue_depth", 'table="predictions"') >= 0
    assert "process_cpu_seconds_total" in text


def test_alias_timestamp_comes_from_the_promoted_at_tag(
    register: Any, model_name: str, settings_for: Any, tracking_uri: str
) -> None:
    from mlflow import MlflowClient

    version = register(model_name)
    MlflowClient(tracking_uri=tracking_uri).set_model_version_tag(
        model_name, version, "promoted_at", "2026-03-01T12:00:00+00:00"
    )
    with TestClient(create_app(settings_for(model_name, prediction_log_enabled=False))) as client:
        text = client.get("/metrics").text

    assert (
        _sample(text, "driftloop_model_alias_set_timestamp_seconds", 'use_case="reviews"')
        == 1772366400.0
    )


def test_metrics_content_type_is_prometheus_text(served: TestClient) -> None:
    response = served.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "version=" in response.headers["content-type"]


def test_json_formatter_carries_the_request_id_and_extras() -> None:
    record = logging.LogRecord(
        "driftloop.test", logging.WARNING, __file__, 1, "hello %s", ("you",), None
    )
    record.duration_ms = 1.5
    token = request_id_var.set("rid-7")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)

    payload = json.loads(line)
    assert payload["msg"] == "hello you"
    assert payload["level"] == "WARNING"
    assert payload["request_id"] == "rid-7"
    assert payload["duration_ms"] == 1.5


def test_json_formatter_keeps_exceptions() -> None:
    try:
        raise ValueError("broken thing")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", None, __import__("sys").exc_info()
        )
    payload = json.loads(JsonFormatter().format(record))
    assert "ValueError: broken thing" in payload["exc"]
    assert "request_id" not in payload


def test_each_request_writes_one_access_line_with_its_id(
    served: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="driftloop.access"):
        served.post("/predict", json={"text": "ok"}, headers={"X-Request-ID": "trace-99"})

    lines = [r for r in caplog.records if r.name == "driftloop.access"]
    assert len(lines) == 1
    line = lines[0]
    assert (line.method, line.path, line.route, line.status) == (
        "POST",
        "/predict",
        "/predict",
        200,
    )
    assert line.duration_ms > 0
    payload = json.loads(JsonFormatter().format(line))
    assert payload["request_id"] == "trace-99"
