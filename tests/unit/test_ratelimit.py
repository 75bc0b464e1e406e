"""GCRA arithmetic with an injected clock; the approximate limiter without Redis; RLS encoding."""

from __future__ import annotations

import asyncio

import pytest
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitResponse

from authz.keys.record import KeyRecord
from authz.ratelimit.gcra import Limit, gcra, limit_for
from authz.ratelimit.limiters import ApproximateLimiter
from authz.transports.ratelimit_service import encode

T0 = 1_700_000_000_000_000  # µs


def record(per_hour: int | None, burst: int | None) -> KeyRecord:
    return KeyRecord(
        key_id="abcdefghijkl",
        user_id=1,
        env="live",
        secret_hash="x",
        scopes=frozenset(),
        expires_at=None,
        revoked_at=None,
        networks=(),
        rate_limit_per_hour=per_hour,
        burst=burst,
        version=1,
    )


def burst_count(limit: Limit, tat: int, now: int, tries: int = 1000) -> tuple[int, int]:
    allowed = 0
    for _ in range(tries):
        tat, verdict = gcra(tat, now, limit)
        allowed += verdict.allowed
    return allowed, tat


@pytest.mark.parametrize("burst", [1, 5, 60])
def test_exactly_burst_pass_from_idle(burst: int) -> None:
    allowed, _ = burst_count(Limit(3600, burst), 0, T0)
    assert allowed == burst


def test_refill_is_one_per_interval() -> None:
    limit = Limit(3600, 5)  # one per second
    _, tat = burst_count(limit, 0, T0)
    tat, verdict = gcra(tat, T0 + 999_999, limit)
    assert not verdict.allowed
    assert verdict.retry_after == pytest.approx(1e-6)
    tat, verdict = gcra(tat, T0 + 1_000_000, limit)
    assert verdict.allowed and verdict.remaining == 0
    # Over 10 minutes at 10 requests a second, exactly 600 more pass: the rate, no boundary 2x.
    passed = 0
    for step in range(1, 6001):
        tat, verdict = gcra(tat, T0 + 1_000_000 + step * 100_000, limit)
        passed += verdict.allowed
    assert passed == 600


def test_remaining_and_reset_count_down() -> None:
    limit = Limit(3600, 3)
    tat, first = gcra(0, T0, limit)
    assert (first.remaining, first.reset_after) == (2, 1.0)
    tat, second = gcra(tat, T0, limit)
    assert (second.remaining, second.reset_after) == (1, 2.0)
    tat, third = gcra(tat, T0, limit)
    assert (third.remaining, third.reset_after) == (0, 3.0)
    _, denied = gcra(tat, T0, limit)
    assert not denied.allowed and denied.retry_after == 1.0 and denied.reset_after == 3.0


def test_idle_key_gets_its_full_burst_back() -> None:
    limit = Limit(60, 10)  # one a minute
    _, tat = burst_count(limit, 0, T0)
    allowed, _ = burst_count(limit, tat, T0 + 3600 * 1_000_000)
    assert allowed == 10


def test_cost_counts_as_many_requests() -> None:
    limit = Limit(3600, 10)
    tat, verdict = gcra(0, T0, limit, cost=7)
    assert verdict.allowed and verdict.remaining == 3
    _, verdict = gcra(tat, T0, limit, cost=4)
    assert not verdict.allowed


@pytest.mark.parametrize(
    ("own", "burst", "expected"),
    [
        (None, None, Limit(10_000, 100)),
        (500, None, Limit(500, 100)),
        (50, None, Limit(50, 50)),  # default burst capped at the limit
        (500, 7, Limit(500, 7)),
        (500, 0, Limit(500, 1)),  # at least one request must be able to pass
        (0, 5, Limit(0, 0)),  # explicit 0: unlimited
    ],
)
def test_limit_for_record(own: int | None, burst: int | None, expected: Limit) -> None:
    assert limit_for(record(own, burst), Limit(10_000, 100)) == expected


def test_default_zero_is_unlimited() -> None:
    assert limit_for(record(None, None), Limit(0, 100)).unlimited


def test_approximate_limiter_without_redis_limits_per_instance() -> None:
    now = [T0 / 1e6]
    limiter = ApproximateLimiter(None, 0.1, clock=lambda: now[0])
    limit = Limit(3600, 4)
    verdicts = [limiter.decide_now("k", limit) for _ in range(6)]
    assert [v.allowed for v in verdicts] == [True] * 4 + [False] * 2
    now[0] += 2.0
    assert sum(limiter.decide_now("k", limit).allowed for _ in range(5)) == 2
    assert asyncio.run(limiter.sync()) == 0  # nothing to sync to


def test_rls_encoding_carries_headers_and_body() -> None:
    _, verdict = gcra(0, T0, Limit(3600, 1))
    allowed = RateLimitResponse.FromString(encode(verdict, b"{}"))
    assert allowed.overall_code == RateLimitResponse.OK
    headers = {h.key: h.value for h in allowed.response_headers_to_add}
    assert headers == {
        "x-ratelimit-limit": "3600",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "1",
    }
    assert not allowed.raw_body
    _, denied_verdict = gcra(T0 + 1_000_000, T0, Limit(3600, 1))
    denied = RateLimitResponse.FromString(encode(denied_verdict, b'{"error":"rate_limited"}'))
    headers = {h.key: h.value for h in denied.response_headers_to_add}
    assert denied.overall_code == RateLimitResponse.OVER_LIMIT
    assert headers["retry-after"] == "1" and headers["content-type"] == "application/json"
    assert denied.raw_body == b'{"error":"rate_limited"}'
    assert denied.statuses[0].current_limit.requests_per_unit == 3600
