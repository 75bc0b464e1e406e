"""The GCRA Lua script against a real Redis, the clock driven through the script's argument."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis

from authz.ratelimit.gcra import Limit, Verdict
from authz.ratelimit.limiters import ApproximateLimiter, ExactLimiter
from authz.settings import Settings
from authz.storage.redis import redis_client
from cli.servers import RedisServer

T = TypeVar("T")
T0 = 1_700_000_000_000_000  # µs
ONE_PER_SECOND = 3600


CLIENTS: list[aioredis.Redis] = []


def client(url: str) -> aioredis.Redis:
    """The process's Redis client as authz builds it; ``run`` closes it after the scenario."""
    made = redis_client(Settings(redis_url=url, redis_timeout=0.2))
    assert made is not None
    CLIENTS.append(made)
    return made


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    async def scenario() -> T:
        try:
            return await factory()
        finally:
            while CLIENTS:
                await CLIENTS.pop().aclose()

    return asyncio.run(scenario())


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def exact(url: str, clock: Clock, redis_down: str = "open") -> ExactLimiter:
    return ExactLimiter(client(url), redis_down, now_us=clock)


async def burst(limiter: ExactLimiter, key: str, limit: Limit, n: int) -> list[Verdict]:
    return [await limiter.decide(key, limit) for _ in range(n)]


def test_exactly_burst_then_denials(redis_url: str) -> None:
    async def scenario() -> list[Verdict]:
        limiter = exact(redis_url, Clock())
        try:
            return await burst(limiter, "k1", Limit(ONE_PER_SECOND, 10), 25)
        finally:
            await limiter.close()

    verdicts = run(scenario)
    assert [v.allowed for v in verdicts] == [True] * 10 + [False] * 15
    assert [v.remaining for v in verdicts[:10]] == list(range(9, -1, -1))
    assert verdicts[10].retry_after == 1.0 and verdicts[10].reset_after == 10.0


def test_refill_rate_matches_the_limit(redis_url: str) -> None:
    """60/h: drive the clock 10 simulated minutes in 100 ms steps; exactly 10 more pass."""

    async def scenario() -> tuple[int, int]:
        clock = Clock()
        limiter = exact(redis_url, clock)
        limit = Limit(60, 3)
        try:
            first = sum(v.allowed for v in await burst(limiter, "k2", limit, 10))
            passed = 0
            for _ in range(6000):
                clock.now += 100_000
                passed += (await limiter.decide("k2", limit)).allowed
            return first, passed
        finally:
            await limiter.close()

    assert run(scenario) == (3, 10)


def test_two_instances_share_one_budget(redis_url: str) -> None:
    async def scenario() -> int:
        clock = Clock()
        one, two = exact(redis_url, clock), exact(redis_url, clock)
        limit = Limit(ONE_PER_SECOND, 8)
        try:
            verdicts = [await (one if i % 2 else two).decide("k3", limit) for i in range(20)]
            return sum(v.allowed for v in verdicts)
        finally:
            await one.close()
            await two.close()

    assert run(scenario) == 8


def test_redis_clock_when_no_time_is_given(redis_url: str) -> None:
    async def scenario() -> list[Verdict]:
        limiter = ExactLimiter(client(redis_url))
        try:
            return await burst(limiter, "k4", Limit(60, 2), 3)
        finally:
            await limiter.close()

    assert [v.allowed for v in run(scenario)] == [True, True, False]


def test_redis_down_follows_the_setting(private_redis: RedisServer) -> None:
    limit = Limit(ONE_PER_SECOND, 1)

    async def scenario(redis_down: str) -> tuple[list[Verdict], int]:
        limiter = exact(private_redis.url, Clock(), redis_down)
        try:
            return await burst(limiter, "k5", limit, 3), limiter.stats.redis_errors
        finally:
            await limiter.close()

    private_redis.stop()
    opened, errors = run(lambda: scenario("open"))
    assert all(v.allowed and v.degraded for v in opened)
    assert errors == 1  # the breaker: one failed call, then no more until it closes again
    denied, _ = run(lambda: scenario("deny"))
    assert all(v.unavailable for v in denied)


def test_approximate_instances_converge_through_redis(redis_url: str) -> None:
    """Two approximate limiters: each spends its local burst once, then the shared TAT rules."""

    async def scenario() -> tuple[int, int]:
        now = [T0 / 1e6]
        one = ApproximateLimiter(client(redis_url), 0.1, clock=lambda: now[0])
        two = ApproximateLimiter(client(redis_url), 0.1, clock=lambda: now[0])
        limit = Limit(ONE_PER_SECOND, 5)
        try:
            first = sum(x.decide_now("k6", limit).allowed for x in (one, two) for _ in range(10))
            await one.sync()
            await two.sync()
            await one.sync()
            # Both now know about all 10 hits: nothing more until the shared TAT has passed.
            after = sum(x.decide_now("k6", limit).allowed for x in (one, two) for _ in range(10))
            return first, after
        finally:
            await one.close()
            await two.close()

    first, after = run(scenario)
    assert first == 10  # overshoot bound: (N-1)·B = 5 beyond the burst of 5
    assert after == 0
