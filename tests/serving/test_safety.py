"""Admin key, body/text/batch limits, per-client rate limits (in memory and in Redis), timeouts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.ratelimit import InMemoryRateLimiter, RateDecision, RedisRateLimiter

REDIS_URL = "redis://127.0.0.1:6379/0"


# ---- admin ---------------------------------------------------------------------------------


def test_admin_is_off_without_a_configured_key(served: TestClient) -> None:
    response = served.post("/admin/reload", headers={"X-API-Key": "anything"})
    assert response.status_code == 403
    assert "DRIFTLOOP_ADMIN_API_KEY" in response.json()["detail"]


def test_admin_needs_the_right_key(champion_name: str, settings_for: Any) -> None:
    app = create_app(settings_for(champion_name, admin_api_key="s3cret-key"))
    with TestClient(app) as client:
        missing = client.post("/admin/reload")
        wrong = client.post("/admin/reload", headers={"X-API-Key": "s3cret-kez"})
        unchanged = client.post("/admin/reload", headers={"X-API-Key": "s3cret-key"})
        forced = client.post("/admin/reload?force=true", headers={"X-API-Key": "s3cret-key"})

    assert missing.status_code == wrong.status_code == 401
    assert "X-API-Key" in wrong.json()["detail"]
    assert unchanged.status_code == 200
    assert unchanged.json()["changed"] is False
    assert forced.status_code == 200
    body = forced.json()
    assert body["changed"] is True
    assert body["previous_version"] == body["version"] == "1"
    assert body["loaded_at"] > unchanged.json()["loaded_at"]


# ---- size limits -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_limits(champion_name: str, settings_for: Any) -> Iterator[TestClient]:
    app = create_app(settings_for(champion_name, max_body_bytes=2048, max_text_chars=1500))
    with TestClient(app) as client:
        yield client


def test_declared_body_over_the_limit_is_413_before_reading(small_limits: TestClient) -> None:
    response = small_limits.post(
        "/predict", json={"text": "x" * 3000}, headers={"X-Request-ID": "big-1"}
    )
    assert response.status_code == 413
    assert "2048 bytes" in response.json()["detail"]
    assert response.headers["x-request-id"] == "big-1"


def test_streamed_body_over_the_limit_is_413(small_limits: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}'

    response = small_limits.post(
        "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "DRIFTLOOP_MAX_BODY_BYTES" in response.json()["detail"]


def test_text_limit_is_422_below_the_body_limit(small_limits: TestClient) -> None:
    assert small_limits.post("/predict", json={"text": "z" * 1500}).status_code == 200
    response = small_limits.post("/predict", json={"text": "z" * 1501})
    assert response.status_code == 422
    assert "1500" in response.json()["detail"][0]["msg"]


# ---- rate limits ---------------------------------------------------------------------------


def test_in_memory_bucket_refills_at_the_configured_rate() -> None:
    limiter = InMemoryRateLimiter(rate=10.0, burst=3)
    decisions = [limiter.check_now("c", 1, now=100.0) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].retry_after_seconds == pytest.approx(0.1)
    assert limiter.check_now("other", 1, now=100.0).allowed
    assert not limiter.check_now("c", 1, now=100.05).allowed
    assert limiter.check_now("c", 1, now=100.11).allowed
    assert limiter.check_now("c", 2, now=101.0).allowed  # refilled to the burst, no further
    assert limiter.check_now("c", 1, now=101.0).allowed
    assert not limiter.check_now("c", 1, now=101.0).allowed


def test_clients_over_their_rate_get_429_with_retry_after(
    champion_name: str, settings_for: Any
) -> None:
    settings = settings_for(champion_name, rate_limit_per_second=0.5, rate_limit_burst=3)
    with TestClient(create_app(settings)) as client:
        codes = [client.post("/predict", json={"text": "fine"}).status_code for _ in range(3)]
        refused = client.post("/predict", json={"text": "fine"})
        batch = client.post("/predict/batch", json={"texts": ["a", "b"]})
        health = client.get("/health")
        metrics = client.get("/metrics").text

    assert codes == [200, 200, 200]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "rate limit exceeded" in refused.json()["detail"]
    assert batch.status_code == 429
    assert health.status_code == 200
    assert 'driftloop_rate_limited_requests_total{route="/predict"} 1.0' in metrics


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {error}")
    prefix = f"driftloop-test:{uuid.uuid4().hex[:8]}:"
    try:
        yield prefix
    finally:
        for key in client.scan_iter(prefix + "*"):
            client.delete(key)
        client.close()


@pytest.mark.redis
def test_redis_limiter_is_one_bucket_for_every_instance(redis_prefix: str) -> None:
    async def run() -> list[RateDecision]:
        first = RedisRateLimiter(REDIS_URL, rate=0.01, burst=5, prefix=redis_prefix)
        second = RedisRateLimiter(REDIS_URL, rate=0.01, burst=5, prefix=redis_prefix)
        try:
            decisions = []
            for index in range(8):
                limiter = first if index % 2 == 0 else second
                decisions.append(await limiter.check("client-a"))
            decisions.append(await second.check("client-b"))
            return decisions
        finally:
            await first.close()
            await second.close()

    decisions = asyncio.run(run())

    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3 + [True]
    assert decisions[5].retry_after_seconds > 10


@pytest.mark.redis
def test_two_apps_sharing_redis_enforce_one_limit(
    champion_name: str, settings_for: Any, redis_prefix: str
) -> None:
    settings = settings_for(
        champion_name,
        rate_limit_per_second=0.01,
        rate_limit_burst=4,
        redis_url=REDIS_URL,
        rate_limit_redis_prefix=redis_prefix,
    )
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        codes = [
            (one if i % 2 == 0 else two).post("/predict", json={"text": "ok"}).status_code
            for i in range(6)
        ]
    assert codes == [200, 200, 200, 200, 429, 429]


@pytest.mark.redis
def test_unreachable_redis_lets_requests_through_and_counts_it(
    champion_name: str, settings_for: Any
) -> None:
    settings = settings_for(champion_name, redis_url="redis://127.0.0.1:9/0")
    with TestClient(create_app(settings)) as client:
        response = client.post("/predict", json={"text": "ok"})
        metrics = client.get("/metrics").text
    assert response.status_code == 200
    assert "driftloop_rate_limiter_errors_total 1.0" in metrics


# ---- timeout -------------------------------------------------------------------------------


class _StuckLimiter:
    """A rate-limit store that never answers, standing in for a hung dependency."""

    rate = 1.0
    burst = 1

    async def check(self, client: str, cost: int = 1) -> RateDecision:
        await asyncio.sleep(60)
        return RateDecision(True)

    async def close(self) -> None:
        return None


def test_a_request_that_hangs_gets_504_and_the_server_stays_up(
    champion_name: str, settings_for: Any
) -> None:
    app = create_app(settings_for(champion_name, request_timeout_seconds=0.3))
    with TestClient(app) as client:
        healthy = app.state.runtime.rate_limiter
        app.state.runtime.rate_limiter = _StuckLimiter()
        stuck = client.post("/predict", json={"text": "ok"}, headers={"X-Request-ID": "slow-1"})
        app.state.runtime.rate_limiter = healthy
        after = client.post("/predict", json={"text": "ok"})

    assert stuck.status_code == 504
    assert "DRIFTLOOP_REQUEST_TIMEOUT_SECONDS" in stuck.json()["detail"]
    assert stuck.headers["x-request-id"] == "slow-1"
    assert after.status_code == 200
