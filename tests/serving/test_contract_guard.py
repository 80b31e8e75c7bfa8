"""Serving refuses a model whose contract version's recorded fingerprint is not what it computes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from contracts import history
from serving.app import create_app
from serving.model import FINGERPRINT_TAG


@pytest.fixture
def fresh_fingerprints() -> Iterator[None]:
    history.forget_computed()
    yield
    history.forget_computed()


def _ready_detail(settings: Any) -> tuple[int, str, int]:
    with TestClient(create_app(settings)) as client:
        ready = client.get("/ready")
        predict = client.post("/predict", json={"text": "great film"})
    return ready.status_code, ready.json().get("detail", ""), predict.status_code


def test_model_trained_on_other_features_is_refused(
    model_name: str, register: Any, settings_for: Any, tracking_uri: str
) -> None:
    version = register(model_name)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.set_model_version_tag(model_name, version, FINGERPRINT_TAG, "0123456789abcdef")

    status, detail, predict = _ready_detail(settings_for(model_name))

    assert (status, predict) == (503, 503)
    assert "refused" in detail and "0123456789abcdef" in detail


def test_server_whose_features_changed_under_the_same_version_refuses(
    model_name: str,
    register: Any,
    settings_for: Any,
    monkeypatch: pytest.MonkeyPatch,
    fresh_fingerprints: None,
) -> None:
    import features.reviews as module

    register(model_name)  # tagged with the current version, reviews-v1
    original = module.clean_text
    monkeypatch.setattr(module, "clean_text", lambda value: original(value).upper())

    status, detail, predict = _ready_detail(settings_for(model_name))

    assert (status, predict) == (503, 503)
    assert "refused" in detail and "was recorded as" in detail


def test_model_with_matching_fingerprint_is_served(
    model_name: str, register: Any, settings_for: Any, tracking_uri: str
) -> None:
    from contracts.reviews import feature_fingerprint

    version = register(model_name)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.set_model_version_tag(model_name, version, FINGERPRINT_TAG, feature_fingerprint())

    status, _, predict = _ready_detail(settings_for(model_name))

    assert (status, predict) == (200, 200)
