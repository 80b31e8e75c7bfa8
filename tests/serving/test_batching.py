"""Micro-batching: concurrent callers share model calls and each gets exactly its own answer."""

from __future__ import annotations

import asyncio
import selectors
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
from serving.batching import MicroBatcher, Scored
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


# ---- closed-loop clients on a virtual clock ------------------------------------------------


class _VirtualSelector(selectors.DefaultSelector):
    """Never sleeps: a wait for the next timer moves the loop's virtual clock instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout:
            self.now += timeout
        return super().select(0)


class _VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose time is the selector's virtual clock: runs are exactly repeatable."""

    def __init__(self) -> None:
        self.clock = _VirtualSelector()
        super().__init__(self.clock)

    def time(self) -> float:
        return self.clock.now


SCORE_FIXED_S = 0.002  # virtual cost of one model call ...
SCORE_PER_ROW_S = 0.0004  # ... and of each review in it
ROUND_TRIP_S = 0.0003  # answer -> client -> next request ...
PARSE_S = 0.0001  # ... plus the server's parsing of the requests ahead of it: 0.1 ms each


def _closed_loop_batches(
    holder: ModelHolder, clients: int, *, seconds: float = 0.5, named: bool = True
) -> list[int]:
    """Batch sizes when `clients` closed-loop clients hammer one batcher for `seconds`.

    Each client's next review arrives one round trip after its answer, later the more
    requests the server parses before it (client i: i parses), so a cohort of 32 comes back
    over 3.2 ms, longer than `max_wait` (2 ms). Half the clients
    connect at once, the other half while the first batch is being scored (as a load
    generator's connections come up); a request sent while a batch is scored on the event
    loop is only seen after it, as a request waiting in a socket buffer would be.
    """
    loop = _VirtualClockLoop()
    sizes: list[int] = []

    def scored(n: int, _seconds: float, _p: np.ndarray) -> None:
        sizes.append(n)
        loop.clock.now += SCORE_FIXED_S + SCORE_PER_ROW_S * n  # the event loop is busy

    batcher = MicroBatcher(holder, max_size=64, max_wait_seconds=0.002, on_batch=scored)

    async def client(index: int) -> None:
        await asyncio.sleep(0 if index < (clients + 1) // 2 else SCORE_FIXED_S / 2)
        key = ("10.0.0.1", 40000 + index) if named else None
        sent = 0
        while loop.time() < seconds:
            await batcher.score((TEXTS[(index + sent) % len(TEXTS)],), client=key)
            sent += 1
            await asyncio.sleep(ROUND_TRIP_S + index * PARSE_S)

    async def run() -> None:
        await asyncio.gather(*(client(i) for i in range(clients)))

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    return sizes


def _steady_mean(sizes: list[int]) -> float:
    steady = sizes[len(sizes) // 4 :]  # past the ramp-up
    return sum(steady) / len(steady)


def test_closed_loop_clients_are_scored_in_one_cohort_not_two(holder: ModelHolder) -> None:
    merged = _closed_loop_batches(holder, 32)
    anonymous = _closed_loop_batches(holder, 32, named=False)

    assert _steady_mean(merged) >= 30, merged
    # Without client names the batcher cannot tell the cohorts apart: half the clients a call.
    assert _steady_mean(anonymous) <= 18, anonymous
    assert len(merged) * 1.5 < len(anonymous)  # far fewer model calls, each paying its fixed cost


def test_sixteen_clients_merge_into_batches_of_sixteen(holder: ModelHolder) -> None:
    sizes = _closed_loop_batches(holder, 16)

    assert 15 <= _steady_mean(sizes) <= 16, sizes


def test_a_lone_client_never_waits(holder: ModelHolder) -> None:
    sizes = _closed_loop_batches(holder, 1)
    per_request = SCORE_FIXED_S + SCORE_PER_ROW_S + ROUND_TRIP_S  # client 0: no parse wait

    assert set(sizes) == {1}
    # No timer ever fires: every request is scored at the next turn of the loop.
    assert len(sizes) == pytest.approx(0.5 / per_request, abs=1)


def test_the_target_falls_back_when_clients_leave(holder: ModelHolder) -> None:
    batcher = MicroBatcher(holder, max_size=64, max_wait_seconds=0.002)
    a = [("h", i) for i in range(4)]
    b = [("h", i) for i in range(4, 8)]

    async def batch(clients: list[Any]) -> None:
        await asyncio.gather(*(batcher.score(("ok",), client=c) for c in clients))

    async def run() -> list[int]:
        targets = []
        for clients in (a, b, a, b, a + b, a + b, a, a):
            await batch(clients)
            targets.append(batcher.target)
        return targets

    # Two cohorts: known to come back from the fourth batch on, so the target covers both.
    # Merged, the target stays at all eight; b's clients then leave, and after one batch
    # that waited for them in vain the target is a's four again.
    assert asyncio.run(run()) == [4, 4, 4, 8, 8, 8, 8, 4]


@pytest.mark.parametrize("client", [["testclient", 50000], ("10.0.0.1", 4321), {"odd": 1}, None])
def test_any_asgi_client_address_is_accepted(holder: ModelHolder, client: Any) -> None:
    """ASGI servers and test transports give `scope["client"]` as a list or a tuple: a list
    once broke every flush (unhashable), leaving its callers waiting for ever."""
    batcher = MicroBatcher(holder, max_size=64, max_wait_seconds=0.002)

    async def run() -> list[Scored]:
        return [
            await asyncio.wait_for(batcher.score(("fine film",), client=client), timeout=5)
            for _ in range(3)
        ]

    results = asyncio.run(run())

    assert [len(r.probabilities) for r in results] == [1, 1, 1]
