"""LeaseLimiter with an in-memory bucket on a simulated clock (tests/unit/lease_sim.py): GCRA's
burst and retry-after, single flight, sizing, prefetch, lapse and return, Redis down, bounded
memory; and a property test over random instances, keys, traffic and network delays that checks
the exactness bound on every window and the under-admission bound on every denial."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authz.ratelimit.gcra import Limit, Verdict
from authz.ratelimit.lease_bucket import Grant, MemoryLeaseStore, Return
from authz.ratelimit.leases import LeaseLimiter, LeaseTuning
from tests.unit.lease_sim import (
    Scenario,
    VirtualLoop,
    excess_us,
    run,
    worst_window_us,
)

T = TypeVar("T")
ONE_PER_SECOND = Limit(3600, 10)
TEN_PER_SECOND = Limit(36_000, 500)  # the default key limit


def simulate(body: Callable[[VirtualLoop], Coroutine[Any, Any, T]]) -> T:
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(body(loop))
    finally:
        loop.close()


class Store:
    """The in-memory bucket with a call counter, a delay and an off switch (Redis down)."""

    def __init__(self, loop: VirtualLoop, delay: float = 0.0) -> None:
        self.inner = MemoryLeaseStore(lambda: loop.now_us)
        self.delay, self.down = delay, False
        self.calls = self.in_flight = self.most_in_flight = 0

    async def _enter(self) -> None:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.down:
            raise ConnectionError("redis is down")

    async def grant(
        self, key_id: str, limit: Limit, wants: Sequence[int], want_lease: int, floor_us: int
    ) -> Grant:
        await self._enter()
        return await self.inner.grant(key_id, limit, wants, want_lease, floor_us)

    async def give_back(self, returns: Sequence[Return]) -> list[int]:
        await self._enter()
        return await self.inner.give_back(returns)


def limiter_on(
    loop: VirtualLoop, store: Store, redis_down: str = "open", **tuning: Any
) -> LeaseLimiter:
    return LeaseLimiter(store, redis_down, clock=loop.time, tuning=LeaseTuning(**tuning))


async def together(
    limiter: LeaseLimiter, n: int, limit: Limit = ONE_PER_SECOND, key: str = "k", cost: int = 1
) -> list[Verdict]:
    return list(await asyncio.gather(*(limiter.decide(key, limit, cost) for _ in range(n))))


def allowed(verdicts: list[Verdict]) -> int:
    return sum(v.allowed for v in verdicts)


# --- GCRA's promise ----------------------------------------------------------------------------
def test_exactly_the_burst_at_once_then_429_with_retry_after() -> None:
    async def body(loop: VirtualLoop) -> tuple[list[Verdict], int]:
        store = Store(loop)
        return await together(limiter_on(loop, store), 11), store.calls

    verdicts, calls = simulate(body)
    assert [v.allowed for v in verdicts] == [True] * 10 + [False]
    assert [v.remaining for v in verdicts[:10]] == list(range(9, -1, -1))
    assert verdicts[10].retry_after == 1.0 and verdicts[10].reset_after == 10.0
    assert calls == 1  # one call asked for all eleven (single flight)


def test_two_instances_share_one_burst() -> None:
    async def body(loop: VirtualLoop) -> list[list[Verdict]]:
        store = Store(loop, delay=0.001)
        one, two = limiter_on(loop, store), limiter_on(loop, store)
        return list(await asyncio.gather(together(one, 10), together(two, 10)))

    first, second = simulate(body)
    assert allowed(first) + allowed(second) == 10


def test_denied_locally_until_the_next_token_then_one_per_interval() -> None:
    async def body(loop: VirtualLoop) -> tuple[list[int], int]:
        store = Store(loop)
        limiter = limiter_on(loop, store)
        await together(limiter, 10)
        calls, passed = store.calls, []
        for _ in range(30):  # ten a second for three seconds: three more pass
            await asyncio.sleep(0.1)
            passed.append((await limiter.decide("k", ONE_PER_SECOND)).allowed)
        return [i for i, ok in enumerate(passed) if ok], store.calls - calls

    passed, calls = simulate(body)
    assert passed == [9, 19, 29]
    assert calls <= 3  # the denials in between never asked Redis


def test_a_cost_counts_as_that_many_tokens() -> None:
    async def body(loop: VirtualLoop) -> list[bool]:
        limiter = limiter_on(loop, Store(loop))
        heavy = await together(limiter, 4, cost=3)
        light = await limiter.decide("k", ONE_PER_SECOND)
        return [v.allowed for v in [*heavy, light]]

    assert simulate(body) == [True, True, True, False, True]


# --- sizing, prefetch, single flight -------------------------------------------------------------
def test_a_slow_key_takes_one_token_per_request_on_demand() -> None:
    async def body(loop: VirtualLoop) -> tuple[int, int, int]:
        store = Store(loop)
        limiter = limiter_on(loop, store)
        for _ in range(5):
            await limiter.decide("k", ONE_PER_SECOND)
            await asyncio.sleep(2.0)
        return store.calls, limiter.leases.leased, limiter.held("k")

    assert simulate(body) == (5, 0, 0)


def test_a_hot_key_is_decided_locally_with_about_two_calls_a_second() -> None:
    """8 requests a second under a 10/s limit for 30 s: the Check's synchronous path answers
    almost all of them; the leases are prefetched in the background."""

    async def body(loop: VirtualLoop) -> tuple[int, int, int, int]:
        store = Store(loop, delay=0.0005)
        limiter = limiter_on(loop, store)
        local = passed = 0
        for _ in range(240):
            verdict = limiter.decide_now("k", TEN_PER_SECOND)
            local += verdict is not None
            verdict = verdict or await limiter.decide("k", TEN_PER_SECOND)
            passed += verdict.allowed
            await asyncio.sleep(0.125)
        return passed, local, store.calls, limiter.leases.lapsed

    passed, local, calls, lapsed = simulate(body)
    assert passed == 240 and lapsed == 0
    assert local >= 230
    assert calls <= 30 * 2.5  # Δ = 1 s: a refill of ~half the pool every half second or so


def test_the_lease_is_capped() -> None:
    async def body(loop: VirtualLoop) -> int:
        limiter = limiter_on(loop, Store(loop), lease_max=16)
        most = 0
        for _ in range(2000):  # 1000/s under a 3600/s limit
            await limiter.decide("k", Limit(3600 * 3600, 1000))
            most = max(most, limiter.held("k"))
            await asyncio.sleep(0.001)
        return most

    assert 8 <= simulate(body) <= 16


def test_requests_during_a_call_share_it() -> None:
    async def body(loop: VirtualLoop) -> tuple[int, int]:
        store = Store(loop, delay=0.01)
        limiter = limiter_on(loop, store)
        waves = []
        for _ in range(10):  # a wave every 2 ms while each call takes 20 ms there and back
            waves.append(asyncio.ensure_future(together(limiter, 5, TEN_PER_SECOND)))
            await asyncio.sleep(0.002)
        await asyncio.gather(*waves)
        return store.most_in_flight, store.calls

    most, calls = simulate(body)
    assert most == 1  # never two calls for the key at once
    assert calls <= 4  # the first wave, the nine others together, then prefetches


# --- lapse, return, forgetting -------------------------------------------------------------------
WIDE = Limit(360, 80)  # one token per 10 s: nothing refills during these tests


def test_an_idle_pool_goes_back_and_serves_another_instance() -> None:
    async def body(loop: VirtualLoop) -> tuple[int, int, int, int]:
        store = Store(loop)
        one, two = limiter_on(loop, store), limiter_on(loop, store)
        spent = allowed(await together(one, 70, WIDE))  # and a lease of 10: the bucket is empty
        held = one.held("k")
        await asyncio.sleep(0.6)
        await one.maintain()  # idle for more than idle_after: handed back
        return spent, held, allowed(await together(two, 15, WIDE)), one.leases.returned

    spent, held, later, returned = simulate(body)
    assert (spent, held) == (70, 10)
    assert later == returned == held  # exactly the returned tokens, no more


def test_close_hands_every_pool_back() -> None:
    async def body(loop: VirtualLoop) -> tuple[int, int]:
        store = Store(loop)
        one, two = limiter_on(loop, store), limiter_on(loop, store)
        await together(one, 70, WIDE)
        await one.close()
        return one.leases.returned, allowed(await together(two, 20, WIDE))

    assert simulate(body) == (10, 10)


def test_unspent_tokens_lapse_at_their_deadline() -> None:
    """A lease taken from a nearly full bucket is due from now + Δ (here 8 s, behind the
    burst's own slots): past its last deadline, nothing is left locally."""

    async def body(loop: VirtualLoop) -> tuple[int, int, Verdict | None]:
        limiter = limiter_on(loop, Store(loop))
        limit = Limit(3600, 80)
        await together(limiter, 8, limit)
        held = limiter.held("k")
        await asyncio.sleep(8 + held)
        verdict = limiter.decide_now("k", limit)
        return held, limiter.leases.lapsed, verdict

    held, lapsed, verdict = simulate(body)
    assert held == 6 and lapsed == held
    assert verdict is None  # nothing left locally: only Redis can tell


def test_idle_keys_are_forgotten() -> None:
    async def body(loop: VirtualLoop) -> tuple[int, int]:
        limiter = limiter_on(loop, Store(loop), forget_after=60.0)
        for i in range(100):
            await limiter.decide(f"key{i}", ONE_PER_SECOND)
        before = limiter.tracked
        await asyncio.sleep(61)
        await limiter.maintain()
        return before, limiter.tracked

    assert simulate(body) == (100, 0)


def test_a_changed_limit_drops_the_pool_and_asks_redis() -> None:
    async def body(loop: VirtualLoop) -> tuple[int, int, int, int]:
        store = Store(loop)
        limiter = limiter_on(loop, store)
        await together(limiter, 40, WIDE)
        held, calls = limiter.held("k"), store.calls
        await limiter.decide("k", Limit(720, 80))
        return held, limiter.leases.lapsed, limiter.held("k"), store.calls - calls

    assert simulate(body) == (10, 10, 0, 1)


# --- Redis down ----------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["open", "deny"])
def test_redis_down_follows_the_setting_after_the_pool(policy: str) -> None:
    async def body(loop: VirtualLoop) -> tuple[list[Verdict], list[Verdict], int, int]:
        store = Store(loop)
        limiter = limiter_on(loop, store, redis_down=policy)
        await together(limiter, 40, WIDE)
        store.down = True
        pooled = [limiter.decide_now("k", WIDE) for _ in range(10)]
        down = await together(limiter, 5, WIDE)
        down += [await limiter.decide("k", WIDE) for _ in range(5)]
        calls = store.calls
        await asyncio.sleep(1.0)  # the breaker closes: one more try
        await limiter.decide("k", WIDE)
        return [v for v in pooled if v], down, store.calls - calls, limiter.stats.redis_errors

    pooled, down, later_calls, errors = simulate(body)
    assert len(pooled) == 10 and all(v.allowed and not v.degraded for v in pooled)
    assert all(v.degraded for v in down)
    assert all(v.allowed for v in down) if policy == "open" else all(v.unavailable for v in down)
    assert later_calls == 1 and errors == 2  # one failed call per breaker period


# --- the bounds, over random traffic -------------------------------------------------------------
def pattern(interval: int, idle: int) -> st.SearchStrategy[tuple[int, ...]]:
    """One instance's request times (µs): bursts, steady runs at 0.25–2.7 T, idle gaps, and
    irregular runs, in any order."""
    segment = st.one_of(
        st.tuples(st.just("burst"), st.integers(1, 40)),
        st.tuples(st.just("steady"), st.integers(1, 60), st.integers(5, 54)),
        st.tuples(st.just("idle"), st.integers(0, idle)),
        st.tuples(st.just("mixed"), st.lists(st.integers(0, 3 * interval), max_size=40)),
    )

    def build(segments: list[tuple[Any, ...]]) -> tuple[int, ...]:
        times: list[int] = []
        now = 0
        for kind, *args in segments:
            if kind == "burst":
                times += [now] * args[0]
            elif kind == "steady":
                step = interval * args[1] // 20
                times += [now + i * step for i in range(args[0])]
                now += args[0] * step
            elif kind == "idle":
                now += args[0]
            else:
                for gap in args[0]:
                    now += gap
                    times.append(now)
        return tuple(times[:150])

    return st.lists(segment, min_size=1, max_size=6).map(build)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    interval = draw(st.sampled_from([1_000, 2_000, 5_000, 10_000]))
    lifetime = draw(st.sampled_from([2_000, 10_000, 50_000]))
    burst = draw(st.integers(1, 30))
    instances = draw(st.integers(1, 3))
    idle = 3 * (lifetime + burst * interval)
    arrivals = tuple(draw(pattern(interval, idle)) for _ in range(instances))
    return Scenario(
        burst,
        interval,
        lifetime,
        draw(st.integers(1, 16)),
        draw(st.sampled_from([0, 100, 1_000, 5_000])),
        arrivals,
        draw(st.integers(0, 2**32)),
    )


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_never_above_the_limit_and_under_admission_bounded(sc: Scenario) -> None:
    """N ∈ {1, 2, 3} instances, random B and R, random traffic and network delays: in every
    window of length t at most B + R·t admissions; every denial is justified up to the bound
    (a GCRA fed the same admissions would deny it given W·T + Δ more room)."""
    outcome = run(sc)
    assert len(outcome.decisions) == sum(len(a) for a in sc.arrivals)
    admitted = [d.at_us for d in outcome.decisions if d.allowed]
    assert worst_window_us(admitted, sc.burst, sc.interval_us) <= 0
    for denial in (d for d in outcome.decisions if not d.allowed):
        assert excess_us(admitted, denial.at_us, sc.burst, sc.interval_us) < denial.bound_us
    assert outcome.max_held <= min(sc.lease_max, max(1, sc.burst // 8))
