"""Micro-batching: concurrent callers share model calls and each gets exactly its own answer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.pipeline import Pipeline

from contracts.reviews import RAW_TEXT
from features.reviews import FEATURE_COLUMNS, build_features
from serving.app import create_app
from serving.batching import MicroBatcher
from serving.model import LoadedModel, ModelHolder, ModelNotLoadedError
from serving.scoring import compile_scorer
from synthetic.reviews import generate_reviews

TEXTS = [
    *generate_reviews(n=60, seed=21)["text"],
    *generate_reviews(n=20, seed=22, domain="products")["text"],
]


def _alone(pipeline: Pipeline, text: str) -> float:
    return float(pipeline.predict_proba(build_features(pd.DataFrame({RAW_TEXT: [text]})))[0, 1])


@pytest.fixture(scope="module")
def holder(tiny_pipeline: Pipeline) -> ModelHolder:
    """A holder with the tiny pipeline in it, no registry involved."""
    held = ModelHolder("http://127.0.0.1:9")
    held._current = LoadedModel(
        name="tiny",
        alias="champion",
        version="7",
        run_id=None,
        feature_contract_version="reviews-v1",
        loaded_at=datetime.now(UTC),
        load_seconds=0.0,
        pipeline=tiny_pipeline,
        positive_index=1,
        scorer=compile_scorer(tiny_pipeline, 1),
    )
    return held


def test_concurrent_callers_share_batches_and_get_their_own_results(
    holder: ModelHolder, tiny_pipeline: Pipeline
) -> None:
    sizes: list[int] = []
    batcher = MicroBatcher(
        holder, max_size=16, max_wait_seconds=0.002, on_batch=lambda n, s, p: sizes.append(n)
    )

    async def run() -> list[Any]:
        return await asyncio.gather(*(batcher.score([t]) for t in TEXTS))

    results = asyncio.run(run())

    assert sum(sizes) == len(TEXTS)
    assert max(sizes) == 16 and len(sizes) < len(TEXTS)
    for text, scored in zip(TEXTS, results, strict=True):
        assert float(scored.probabilities[0]) == _alone(tiny_pipeline, text)
        assert scored.model.version == "7"
        expected = build_features(pd.DataFrame({RAW_TEXT: [text]})).iloc[0].tolist()
        assert list(scored.feature_rows[0]) == expected


def test_a_group_is_never_split_even_above_max_size(
    holder: ModelHolder, tiny_pipeline: Pipeline
) -> None:
    sizes: list[int] = []
    batcher = MicroBatcher(holder, max_size=4, on_batch=lambda n, s, p: sizes.append(n))

    async def run() -> list[Any]:
        return await asyncio.gather(
            batcher.score(TEXTS[:3]), batcher.score(TEXTS[3:13]), batcher.score(TEXTS[13:14])
        )

    _first, big, _last = asyncio.run(run())

    assert sizes == [3, 10, 1]
    assert len(big.probabilities) == 10
    assert [float(p) for p in big.probabilities] == [_alone(tiny_pipeline, t) for t in TEXTS[3:13]]


def test_no_model_fails_every_waiting_caller_with_the_reason() -> None:
    empty = ModelHolder("http://127.0.0.1:9")
    empty.record_error("registry down")
    batcher = MicroBatcher(empty)

    async def run() -> list[Any]:
        return await asyncio.gather(
            batcher.score(["a"]), batcher.score(["b"]), return_exceptions=True
        )

    results = asyncio.run(run())

    assert all(isinstance(r, ModelNotLoadedError) and "registry down" in str(r) for r in results)


def test_a_cancelled_caller_is_skipped(holder: ModelHolder) -> None:
    sizes: list[int] = []
    batcher = MicroBatcher(holder, on_batch=lambda n, s, p: sizes.append(n))

    async def run() -> Any:
        doomed = asyncio.ensure_future(batcher.score(["gone"]))
        kept = asyncio.ensure_future(batcher.score(["kept"]))
        await asyncio.sleep(0)
        doomed.cancel()
        return await kept

    scored = asyncio.run(run())

    assert sizes == [1]
    assert len(scored.probabilities) == 1


class _FailsOn:
    """Scorer stand-in that refuses one poisoned text and delegates the rest."""

    name = "fails-on"

    def __init__(self, inner: Any, poison: str) -> None:
        self.inner = inner
        self.poison = poison

    def score(self, columns: Any) -> np.ndarray:
        if any(self.poison in text for text in columns["text_clean"]):
            raise ValueError("poisoned")
        return self.inner.score(columns)


def test_a_failing_batch_fails_only_the_request_that_broke_it(
    holder: ModelHolder, tiny_pipeline: Pipeline
) -> None:
    model = holder.require()
    poisoned = ModelHolder("http://127.0.0.1:9")
    poisoned._current = LoadedModel(
        **{**model.__dict__, "scorer": _FailsOn(model.scorer, "poison")}
    )
    batcher = MicroBatcher(poisoned)

    async def run() -> list[Any]:
        return await asyncio.gather(
            batcher.score(["fine one"]),
            batcher.score(["poison"]),
            batcher.score(["fine two"]),
            return_exceptions=True,
        )

    good, bad, also_good = asyncio.run(run())

    assert isinstance(bad, ValueError)
    assert float(good.probabilities[0]) == _alone(tiny_pipeline, "fine one")
    assert float(also_good.probabilities[0]) == _alone(tiny_pipeline, "fine two")


# ---- through the API ---------------------------------------------------------------------


def test_concurrent_http_requests_are_batched_and_answered_individually(
    champion_name: str, settings_for: Any, tiny_pipeline: Pipeline
) -> None:
    app = create_app(settings_for(champion_name, batch_max_size=64, prediction_log_enabled=False))

    async def run() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                return await asyncio.gather(
                    *(client.post("/predict", json={"text": t}) for t in TEXTS)
                )

    responses = asyncio.run(run())

    assert [r.status_code for r in responses] == [200] * len(TEXTS)
    for text, response in zip(TEXTS, responses, strict=True):
        assert response.json()["probability"] == _alone(tiny_pipeline, text)
    assert app.state.runtime.batcher.batches < len(TEXTS)
    assert len({r.json()["request_id"] for r in responses}) == len(TEXTS)


def test_batch_endpoint_scores_each_review_as_if_alone(
    served: TestClient, tiny_pipeline: Pipeline
) -> None:
    texts = TEXTS[:7]

    response = served.post("/predict/batch", json={"texts": texts}, headers={"X-Request-ID": "b-1"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["request_id"] == "b-1"
    assert body["model_version"] == "1"
    assert [p["request_id"] for p in body["predictions"]] == [f"b-1-{i}" for i in range(7)]
    assert [p["probability"] for p in body["predictions"]] == [
        _alone(tiny_pipeline, t) for t in texts
    ]
    assert [p["label"] for p in body["predictions"]] == [
        int(p["probability"] >= 0.5) for p in body["predictions"]
    ]


def test_batch_endpoint_limits(champion_name: str, settings_for: Any) -> None:
    app = create_app(settings_for(champion_name, max_batch_reviews=5, max_text_chars=50))
    with TestClient(app) as client:
        assert client.post("/predict/batch", json={"texts": ["ok"] * 5}).status_code == 200
        too_many = client.post("/predict/batch", json={"texts": ["ok"] * 6})
        too_long = client.post("/predict/batch", json={"texts": ["ok", "y" * 51]})
        blank = client.post("/predict/batch", json={"texts": ["ok", "  "]})
        empty = client.post("/predict/batch", json={"texts": []})

    assert too_many.status_code == 413
    assert "at most 5" in too_many.json()["detail"]
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["loc"] == ["body", "texts", 1]
    assert blank.status_code == 422
    assert blank.json()["detail"][0]["loc"] == ["body", "texts", 1]
    assert empty.status_code == 422


def test_return_features_matches_the_logged_feature_columns(served: TestClient) -> None:
    response = served.post("/predict?return_features=true", json={"text": "Not BAD at all!!"})
    assert list(response.json()["features"]) == list(FEATURE_COLUMNS)
