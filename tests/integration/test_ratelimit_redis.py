"""The approximate limiter against a real Redis (the exact one, leases: test_leases_redis.py)."""

from __future__ import annotations

from authz.ratelimit.gcra import Limit
from authz.ratelimit.limiters import ApproximateLimiter
from tests.support.redis_clients import client, run

T0 = 1_700_000_000_000_000  # µs
ONE_PER_SECOND = 3600


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
