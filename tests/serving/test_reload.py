"""Hot reload: a new champion is swapped in while requests keep being answered."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.pipeline import Pipeline

from contracts.reviews import RAW_TEXT
from features.reviews import build_features
from serving.app import create_app
from serving.config import ServingSettings
from synthetic.reviews import generate_reviews

TEXTS = list(generate_reviews(n=24, seed=31)["text"])


def _wait_for_version(client: TestClient, version: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/model-info").json().get("version") != version:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"version {version} never loaded: {client.get('/model-info').text}"
            )
        time.sleep(0.05)


@pytest.mark.slow
def test_no_request_fails_while_new_versions_are_swapped_in(
    model_name: str, register: Any, settings_for: Any, tiny_pipeline: Pipeline
) -> None:
    register(model_name)
    expected = dict(
        zip(
            TEXTS,
            tiny_pipeline.predict_proba(build_features(pd.DataFrame({RAW_TEXT: TEXTS})))[:, 1],
            strict=True,
        )
    )
    settings = settings_for(
        model_name, reload_interval_seconds=0.05, admin_api_key="k", prediction_log_enabled=False
    )
    results: list[list[tuple[int, str, float, str]]] = [[] for _ in range(4)]
    stop = threading.Event()

    with TestClient(create_app(settings)) as client:

        def hammer(slot: int) -> None:
            index = slot
            while not stop.is_set():
                text = TEXTS[index % len(TEXTS)]
                index += 1
                response = client.post("/predict", json={"text": text})
                body = response.json()
                results[slot].append(
                    (response.status_code, body.get("model_version"), body.get("probability"), text)
                )

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        try:
            while sum(map(len, results)) < 40:
                time.sleep(0.02)
            register(model_name)
            _wait_for_version(client, "2")
            forced = client.post("/admin/reload?force=true", headers={"X-API-Key": "k"})
            register(model_name)
            _wait_for_version(client, "3")
            seen = sum(map(len, results))
            while sum(map(len, results)) < seen + 40:
                time.sleep(0.02)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        loads = client.get("/model-info").json()["loads"]

    answers = [item for per_thread in results for item in per_thread]
    assert forced.status_code == 200 and forced.json()["changed"] is True
    assert loads == 4
    assert [a for a in answers if a[0] != 200] == []
    assert {"1", "3"} <= {a[1] for a in answers}
    for per_thread in results:
        versions = [int(a[1]) for a in per_thread]
        assert versions == sorted(versions), "a thread saw an older model after a newer one"
    assert all(probability == expected[text] for _, _, probability, text in answers)
    print(
        f"\n{len(answers)} requests across 3 swaps, versions answered: "
        f"{sorted({a[1] for a in answers})}, failures: 0"
    )


def test_reload_is_on_by_default_every_30_seconds() -> None:
    assert ServingSettings.model_fields["reload_interval_seconds"].default == 30.0


def test_gc_freeze_keeps_the_model_out_of_collections_and_old_models_are_freed(
    champion_name: str, settings_for: Any
) -> None:
    app = create_app(settings_for(champion_name, gc_freeze=True, admin_api_key="k"))
    try:
        with TestClient(app) as client:
            assert gc.get_freeze_count() > 0
            first = app.state.holder.require()
            first_pipeline = weakref.ref(first.pipeline)
            del first
            response = client.post("/admin/reload?force=true", headers={"X-API-Key": "k"})
            assert response.status_code == 200
            assert client.post("/predict", json={"text": "fine"}).status_code == 200
            assert first_pipeline() is None, "the replaced model is still alive"
            assert app.state.holder.require().pipeline is not None
    finally:
        gc.unfreeze()
