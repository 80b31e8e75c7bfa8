"""Per-client rate limits: a token bucket per client address, in memory or in Redis.

A client may send `burst` requests at once and `rate` per second after that
(a /predict/batch request costs one token per review). In memory, each worker
keeps its own buckets, so N workers admit up to N times the rate; with
`REDIS_URL` set, one Lua script updates a shared bucket atomically with
Redis' own clock, so every worker and replica enforces one limit.

If Redis cannot be reached the request is let through (and counted in
`driftloop_rate_limiter_errors_total`): an outage of the limiter should not
become an outage of the API.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_seconds: float = 0.0


_ALLOWED = RateDecision(True)  # immutable, so every allowed request shares one


class RateLimiter(Protocol):
    rate: float
    burst: int

    async def check(self, client: str, cost: int = 1) -> RateDecision: ...

    async def close(self) -> None: ...


class RateLimiterUnavailableError(RuntimeError):
    """The shared limiter's store could not be asked."""


def _retry_after(missing: float, rate: float) -> float:
    return max(missing / rate, 0.001)


class InMemoryRateLimiter:
    """Token buckets in this process; stale buckets are pruned as the table grows."""

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    async def check(self, client: str, cost: int = 1) -> RateDecision:
        return self.check_now(client, cost, time.monotonic())

    def check_now(self, client: str, cost: int, now: float) -> RateDecision:
        cost = min(cost, self.burst)
        tokens, stamp = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - stamp) * self.rate)
        if tokens >= cost:
            self._buckets[client] = (tokens - cost, now)
            if len(self._buckets) > self.max_clients:
                self._prune(now)
            return _ALLOWED
        self._buckets[client] = (tokens, now)
        return RateDecision(False, _retry_after(cost - tokens, self.rate))

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {
            key: value for key, value in self._buckets.items() if now - value[1] < full_after
        }

    async def close(self) -> None:
        self._buckets.clear()


# KEYS[1] = bucket key; ARGV = rate, burst, cost. Returns {allowed, tokens_after * 1000}.
_TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil then
  tokens = burst
  stamp = now
end
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, math.floor(tokens * 1000)}
"""


class RedisRateLimiter:
    """Token buckets shared through Redis (one atomic script call per request)."""

    def __init__(
        self, url: str, rate: float, burst: int, prefix: str = "driftloop:ratelimit:"
    ) -> None:
        import redis.asyncio as redis_asyncio

        self.rate = rate
        self.burst = burst
        self.prefix = prefix
        self.url = url
        self._client: Any = redis_asyncio.Redis.from_url(
            url, socket_connect_timeout=1.0, socket_timeout=1.0
        )
        self._script = self._client.register_script(_TOKEN_BUCKET_LUA)

    async def check(self, client: str, cost: int = 1) -> RateDecision:
        from redis.exceptions import RedisError

        cost = min(cost, self.burst)
        try:
            allowed, tokens_milli = await self._script(
                keys=[self.prefix + client], args=[self.rate, self.burst, cost]
            )
        except (RedisError, OSError) as error:
            raise RateLimiterUnavailableError(
                f"rate limiter store {self.url} unreachable: {error}"
            ) from error
        if int(allowed):
            return RateDecision(True)
        return RateDecision(False, _retry_after(cost - int(tokens_milli) / 1000, self.rate))

    async def ping(self) -> bool:
        from redis.exceptions import RedisError

        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._client.aclose()


def build_rate_limiter(
    rate: float, burst: int, redis_url: str | None, prefix: str = "driftloop:ratelimit:"
) -> RateLimiter | None:
    """None when rate is 0 (limits off); Redis-backed when a URL is given."""
    if rate <= 0:
        return None
    if redis_url:
        return RedisRateLimiter(redis_url, rate, burst, prefix=prefix)
    return InMemoryRateLimiter(rate, burst)


def retry_after_header(seconds: float) -> str:
    """Whole seconds, at least 1, as the Retry-After header wants."""
    return str(max(1, math.ceil(seconds)))
