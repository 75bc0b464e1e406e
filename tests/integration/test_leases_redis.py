"""Leased limits on a real Redis: the Lua scripts pinned to the Python arithmetic with a driven
clock, and two LeaseLimiter instances sharing one Redis, driven concurrently."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.ratelimit.lease_bucket import LEASE_PREFIX, Bucket, RedisLeaseStore, Return, give_back, grant
from authz.ratelimit.gcra import Limit
from authz.settings import Settings
from authz.storage.redis import redis_client

T = TypeVar("T")
KEYS = itertools.count()
T0 = 1_700_000_000_000_000  # µs
SECOND = 1_000_000


def client(url: str, timeout: float) -> aioredis.Redis:
    made = redis_client(Settings(redis_url=url, redis_timeout=timeout))
    assert made is not None
    return made


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(factory())


# --- the scripts are the arithmetic ------------------------------------------------------------
LIMITS = (Limit(3600, 10), Limit(36_000, 5), Limit(7200, 10))
Op = tuple[str, int, list[int], int, int, int]
ops = st.lists(st.tuples(
    st.sampled_from(["grant", "grant", "give_back"]), st.integers(0, 3 * SECOND),
    st.lists(st.integers(1, 3), max_size=4), st.integers(0, 12),
    st.integers(-2 * SECOND, 12 * SECOND), st.sampled_from([0, 0, 1, 2])),
    min_size=1, max_size=25)


def state(client: redis.Redis, key: str) -> Bucket:
    raw = {str(k): int(v) for k, v in client.hgetall(LEASE_PREFIX + key).items()}
    return Bucket(raw.get("tat", 0), raw.get("first", 0), raw.get("spare", 0),
                  raw.get("interval", 0))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_lua_and_python_agree(redis_url: str, steps: list[Op]) -> None:
    """The same random grants and returns (limit changes included) on Redis and in Python:
    the same answers and the same stored state, step by step."""
    key, now, mine = f"pin{next(KEYS)}", [T0], Bucket()
    sync = redis.Redis.from_url(redis_url, decode_responses=True)

    async def scenario() -> None:
        store = RedisLeaseStore(client(redis_url, 2.0), now_us=lambda: now[0])
        try:
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
                        give_back(mine, now[0], limit, item.first_us, item.count)]
                assert state(sync, key) == mine
        finally:
            await store.close()

    try:
        run(scenario)
    finally:
        sync.close()
