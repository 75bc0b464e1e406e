"""Leased limits on a real Redis: the Lua scripts pinned to the Python arithmetic with a driven
clock, and two LeaseLimiter instances sharing one Redis, driven concurrently."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.ratelimit.gcra import Limit, Verdict
from authz.ratelimit.lease_bucket import (
    LEASE_PREFIX,
    Bucket,
    RedisLeaseStore,
    Return,
    give_back,
    grant,
)
from authz.ratelimit.leases import LeaseLimiter, LeaseTuning, Trace
from authz.ratelimit.limiters import KeyLimits, build_limiter
from authz.settings import Settings
from cli.servers import RedisServer
from tests.support.redis_clients import client, run
from tests.unit.lease_sim import worst_window_us
from tests.unit.test_ratelimit import record as key_record

KEYS = itertools.count()
T0 = 1_700_000_000_000_000  # µs
SECOND = 1_000_000


# --- the scripts are the arithmetic ------------------------------------------------------------
LIMITS = (Limit(3600, 10), Limit(36_000, 5), Limit(7200, 10))
Op = tuple[str, int, list[int], int, int, int]
ops = st.lists(
    st.tuples(
        st.sampled_from(["grant", "grant", "give_back"]),
        st.integers(0, 3 * SECOND),
        st.lists(st.integers(1, 3), max_size=4),
        st.integers(0, 12),
        st.integers(-2 * SECOND, 12 * SECOND),
        st.sampled_from([0, 0, 1, 2]),
    ),
    min_size=1,
    max_size=25,
)


def state(client: redis.Redis, key: str) -> Bucket:
    raw = {str(k): int(v) for k, v in client.hgetall(LEASE_PREFIX + key).items()}
    return Bucket(
        raw.get("tat", 0), raw.get("first", 0), raw.get("spare", 0), raw.get("interval", 0)
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops)
def test_lua_and_python_agree(redis_url: str, steps: list[Op]) -> None:
    """The same random grants and returns (limit changes included) on Redis and in Python:
    the same answers and the same stored state, step by step."""
    key, now, mine = f"pin{next(KEYS)}", [T0], Bucket()
    sync = redis.Redis.from_url(redis_url, decode_responses=True)

    async def scenario() -> None:
        store = RedisLeaseStore(client(redis_url, 2.0), now_us=lambda: now[0])
        for op, gap, wants, want_lease, offset, which in steps:
            now[0] += gap
            limit = LIMITS[which % len(LIMITS)]
            if op == "grant":
                floor = max(0, offset)
                theirs = await store.grant(key, limit, wants, want_lease, floor)
                assert theirs == grant(mine, now[0], limit, wants, want_lease, floor=floor)
            else:
                item = Return(key, limit, now[0] + offset, want_lease)
                assert await store.give_back([item]) == [
                    give_back(mine, now[0], limit, item.first_us, item.count)
                ]
            assert state(sync, key) == mine

    try:
        run(scenario)
    finally:
        sync.close()


# --- two limiter instances on one Redis ----------------------------------------------------------
WIDE = Limit(360, 80)  # one token per 10 s: nothing refills during a test
ONE_PER_SECOND = Limit(3600, 10)


def leasing(
    url: str,
    redis_down: str = "open",
    now_us: Callable[[], int] | None = None,
    trace: Trace | None = None,
) -> LeaseLimiter:
    store = RedisLeaseStore(client(url, 0.5), now_us=now_us)
    return LeaseLimiter(store, redis_down, tuning=LeaseTuning(breaker=60.0), trace=trace)


async def together(limiter: LeaseLimiter, n: int, limit: Limit, key: str = "k") -> list[Verdict]:
    return list(await asyncio.gather(*(limiter.decide(key, limit) for _ in range(n))))


async def holding(limiter: LeaseLimiter, tokens: int, deadline: float = 10.0) -> int:
    """Poll until the background prefetch has pooled ``tokens`` (or the deadline passes)."""
    until = time.monotonic() + deadline
    while limiter.held("k") < tokens and time.monotonic() < until:
        await asyncio.sleep(0.001)
    return limiter.held("k")


def test_exactly_the_burst_at_once_then_429_with_retry_after(redis_url: str) -> None:
    async def scenario() -> tuple[list[Verdict], list[Verdict], list[Verdict]]:
        one, two = leasing(redis_url), leasing(redis_url)
        try:
            alone = await together(one, 11, ONE_PER_SECOND, key="alone")
            await two.decide("warm-up", WIDE)  # both connections open: the calls race fairly
            both = await asyncio.gather(together(one, 50, WIDE), together(two, 50, WIDE))
            return alone, *both
        finally:
            await one.close()
            await two.close()

    alone, first, second = run(scenario)
    assert [v.allowed for v in alone] == [True] * 10 + [False]
    assert alone[10].retry_after == 1.0 and alone[10].reset_after == 10.0
    assert sum(v.allowed for v in first + second) == 80  # the burst, once, across both
    denied = [v for v in first + second if not v.allowed]
    assert all(0 < v.retry_after <= 10.0 for v in denied)


def test_steady_overload_never_exceeds_the_limit_in_any_window(redis_url: str) -> None:
    """Two instances, two tasks each, requesting every ~2 ms for up to 2 s against 100/s with
    burst 5: every window of admissions holds at most B + R·t. One clock for both instances and
    Redis (the script gets it as an argument), so on-demand instants and local spends compare."""
    limit = Limit(360_000, 5)
    admitted: list[int] = []

    def now_us() -> int:
        return math.ceil(time.monotonic() * 1e6)  # never before the caller's own reading

    def trace(_key: str, allowed: bool, local: float, redis_us: int | None) -> None:
        if allowed:
            admitted.append(redis_us if redis_us is not None else math.ceil(local * 1e6))

    async def hammer(limiter: LeaseLimiter, until: float) -> int:
        for sent in range(1000):
            if time.monotonic() > until:
                return sent
            await limiter.decide("k", limit)
            await asyncio.sleep(0.002)
        return 1000

    async def scenario() -> tuple[int, int]:
        one = leasing(redis_url, now_us=now_us, trace=trace)
        two = leasing(redis_url, now_us=now_us, trace=trace)
        until = time.monotonic() + 2.0
        try:
            sent = await asyncio.gather(*(hammer(x, until) for x in (one, one, two, two)))
        finally:
            await one.close()
            await two.close()
        return sum(sent), one.leases.calls + two.leases.calls

    requests, calls = run(scenario)
    assert limit.burst <= len(admitted) < requests
    assert worst_window_us(admitted, limit.burst, limit.interval_us) <= 0
    assert calls < requests / 2  # denied locally until the next token: no call per request


@pytest.mark.parametrize("policy", ["open", "deny"])
def test_redis_stopped_follows_the_setting(private_redis: RedisServer, policy: str) -> None:
    """Tokens already leased are still spent; after them the setting decides, and the breaker
    keeps the outage to one failed call."""

    async def scenario() -> tuple[list[Verdict], list[Verdict], int]:
        limiter = leasing(private_redis.url, policy)
        try:
            await together(limiter, 8, WIDE)
            await holding(limiter, 6)  # the prefetch that follows: the key is hot
            private_redis.stop()
            pooled = [limiter.decide_now("k", WIDE) for _ in range(limiter.held("k"))]
            down = [await limiter.decide("k", WIDE) for _ in range(5)]
            return [v for v in pooled if v is not None], down, limiter.stats.redis_errors
        finally:
            await limiter.close()

    pooled, down, errors = run(scenario)
    assert len(pooled) == 6 and all(v.allowed and not v.degraded for v in pooled)
    assert all(v.degraded for v in down)
    assert all(v.allowed for v in down) if policy == "open" else all(v.unavailable for v in down)
    assert errors == 1  # one failed call; the breaker answered the rest


def test_returned_tokens_serve_the_other_instance(redis_url: str) -> None:
    async def scenario() -> tuple[int, int, int]:
        one, two = leasing(redis_url), leasing(redis_url)
        try:
            spent = sum(v.allowed for v in await together(one, 70, WIDE))
            held = await holding(one, 10)
            await one.close()  # hands the pool back as spare
            later = sum(v.allowed for v in await together(two, 15, WIDE))
            return spent, held, later
        finally:
            await two.close()

    spent, held, later = run(scenario)
    assert (spent, held) == (70, 10)
    assert later == held


def test_the_default_settings_build_it_for_the_check(redis_url: str) -> None:
    """Exact mode (the default) is the lease limiter: build_limiter makes a LeaseLimiter, and
    the Check's phase 8 (KeyLimits) gets exactly the key's burst, then a denial with
    retry-after."""
    settings = Settings.from_env({"HOKUSAI_REDIS_URL": redis_url})
    assert settings.rate_limit_mode == "exact"
    record = key_record(60, 3)

    async def scenario() -> list[Verdict]:
        limiter = build_limiter(
            client(redis_url, settings.redis_timeout),
            settings.rate_limit_mode,
            settings.rate_limit_sync_interval,
            settings.rate_limit_redis_down,
        )
        assert isinstance(limiter, LeaseLimiter)
        limits = KeyLimits(limiter, Limit(36_000, 500))
        try:
            return [limits.decide_now(record) or await limits.decide(record) for _ in range(5)]
        finally:
            await limiter.close()

    verdicts = run(scenario)
    assert [v.allowed for v in verdicts] == [True] * 3 + [False] * 2
    assert [v.remaining for v in verdicts[:3]] == [2, 1, 0]
    assert 0 < verdicts[3].retry_after <= 60
