"""The shared bucket's arithmetic (authz/ratelimit/lease_bucket.py) with a driven clock:
on-demand grants are plain GCRA, leases are charged from the floor, spare tokens keep their
deadlines, and merged ranges are never later than the tokens they stand for."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authz.ratelimit.gcra import Limit, gcra
from authz.ratelimit.lease_bucket import Bucket, give_back, grant, merge, unexpired

T0 = 1_700_000_000_000_000  # µs
SECOND = 1_000_000
ONE_PER_SECOND = Limit(3600, 10)


def deadlines(first: int, count: int, t: int) -> list[int]:
    return [first + k * t for k in range(count)]


@given(
    st.integers(-50, 50),
    st.integers(0, 8),
    st.integers(-50, 50),
    st.integers(0, 8),
    st.integers(1, 10),
)
def test_merge_is_never_later_than_the_union(a0: int, na: int, b0: int, nb: int, t: int) -> None:
    first, count = merge(a0, na, b0, nb, t)
    union = sorted(deadlines(a0, na, t) + deadlines(b0, nb, t))
    assert count == na + nb
    assert all(
        mine <= theirs for mine, theirs in zip(deadlines(first, count, t), union, strict=True)
    )


@given(st.integers(0, 100), st.integers(1, 8), st.integers(0, 20), st.integers(1, 8))
def test_merging_disjoint_slots_loses_nothing(a0: int, na: int, gap: int, nb: int) -> None:
    """Slots of a real bucket never overlap: then the merged range starts at the first one."""
    t = 10
    b0 = a0 + (na + gap) * t
    assert merge(a0, na, b0, nb, t)[0] == a0
    assert merge(b0, nb, a0, na, t)[0] == a0


def test_unexpired_drops_the_past_deadlines_only() -> None:
    assert unexpired(100, 5, 100, 10) == (100, 5)  # due now: still good
    assert unexpired(100, 5, 101, 10) == (110, 4)
    assert unexpired(100, 5, 130, 10) == (130, 2)
    assert unexpired(100, 5, 500, 10) == (150, 0)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3 * SECOND), st.integers(1, 4)), max_size=40),
    st.integers(1, 6),
)
def test_on_demand_grants_are_plain_gcra(steps: list[tuple[int, int]], burst: int) -> None:
    """Without leases, one-token grants admit exactly when GCRA would, with GCRA's TAT and
    retry-after."""
    limit, bucket, tat, now = Limit(3600, burst), Bucket(), 0, T0
    for gap, requests in steps:
        now += gap
        for _ in range(requests):
            tat, verdict = gcra(tat, now, limit)
            result = grant(bucket, now, limit, [1], 0, floor=SECOND)
            assert result.taken == verdict.allowed
            assert max(bucket.tat, now) == max(tat, now)
            if not verdict.allowed:
                assert result.wait_us / 1e6 == verdict.retry_after


def test_exactly_the_burst_at_once_then_one_per_interval() -> None:
    bucket = Bucket()
    first = grant(bucket, T0, ONE_PER_SECOND, [1] * 25, 0, floor=0)
    assert (first.taken, first.wait_us, first.ahead_us) == (10, SECOND, 10 * SECOND)
    assert grant(bucket, T0 + SECOND - 1, ONE_PER_SECOND, [1], 0, floor=0).taken == 0
    assert grant(bucket, T0 + SECOND, ONE_PER_SECOND, [1] * 5, 0, floor=0).taken == 1


def test_each_waiting_request_gets_its_cost_or_nothing_in_order() -> None:
    result = grant(Bucket(), T0, ONE_PER_SECOND, [3, 3, 3, 3, 1], 0, floor=0)
    assert result.taken == 10  # 3 + 3 + 3, the fourth does not fit, the last one does


def test_a_lease_is_charged_from_the_floor() -> None:
    """From a full bucket, tokens leased with floor Δ are due from now + Δ, and the grant
    conforms with Δ of refill claimed: at most B − Δ/T of them."""
    bucket = Bucket()
    result = grant(bucket, T0, ONE_PER_SECOND, [], 20, floor=3 * SECOND)
    assert (result.fresh_lease, result.fresh_first_us) == (7, 3 * SECOND)
    assert bucket.tat == T0 + 10 * SECOND
    assert grant(bucket, T0, ONE_PER_SECOND, [1], 1, floor=3 * SECOND).taken == 0


def test_a_lease_behind_a_busy_bucket_starts_at_its_tat() -> None:
    bucket = Bucket()
    grant(bucket, T0, ONE_PER_SECOND, [1] * 6, 0, floor=0)
    result = grant(bucket, T0, ONE_PER_SECOND, [1], 2, floor=SECOND)
    assert (result.taken, result.fresh_lease, result.fresh_first_us) == (1, 2, 7 * SECOND)
    assert result.ahead_us == 9 * SECOND


def test_spare_tokens_are_taken_first_and_keep_their_deadlines() -> None:
    bucket = Bucket()
    grant(bucket, T0, ONE_PER_SECOND, [1] * 10, 0, floor=0)  # empty until T0 + 1 s
    assert give_back(bucket, T0, ONE_PER_SECOND, T0 + 4 * SECOND, 3) == 3
    taken = grant(bucket, T0, ONE_PER_SECOND, [1], 5, floor=0)
    assert (taken.taken, taken.spare_lease, taken.spare_first_us) == (1, 2, 5 * SECOND)
    assert (taken.fresh_lease, taken.spare) == (0, 0)
    assert bucket.tat == T0 + 10 * SECOND  # spare tokens were paid for when first granted


def test_spare_tokens_expire_and_belong_to_one_interval() -> None:
    bucket = Bucket()
    grant(bucket, T0, ONE_PER_SECOND, [1] * 10, 0, floor=0)
    assert give_back(bucket, T0, ONE_PER_SECOND, T0 - SECOND, 3) == 2  # one already past due
    assert grant(bucket, T0 + 2 * SECOND, ONE_PER_SECOND, [1], 0, floor=0).spare == 0
    give_back(bucket, T0, ONE_PER_SECOND, T0 + 5 * SECOND, 3)
    other = Limit(7200, 10)
    assert grant(bucket, T0, other, [], 0, floor=0).spare == 0  # limit changed: dropped


@pytest.mark.parametrize("want", [0, 1])
def test_wait_is_zero_while_spare_tokens_remain(want: int) -> None:
    bucket = Bucket()
    grant(bucket, T0, ONE_PER_SECOND, [1] * 10, 0, floor=0)
    give_back(bucket, T0, ONE_PER_SECOND, T0 + 5 * SECOND, 2)
    result = grant(bucket, T0, ONE_PER_SECOND, [1] * want, 0, floor=0)
    assert result.wait_us == 0 and result.spare == 2 - want
