"""A simulated clock and network for LeaseLimiter instances sharing one in-memory bucket, and the
brute-force checks of the exactness and under-admission bounds.

``VirtualLoop`` is an asyncio loop whose clock jumps to the next timer instead of sleeping
(integer µs), so ``asyncio.sleep`` and the limiters' background work run in simulated time,
deterministically. ``NetworkStore`` puts a random delay on the way to the bucket and back, and
keeps the ledger the under-admission bound is made of (tokens in transit, chain restarts,
expired spare).
"""

from __future__ import annotations

import asyncio
import math
import random
import selectors
from collections.abc import Sequence
from dataclasses import dataclass, field

from authz.ratelimit.gcra import HOUR_US, Limit
from authz.ratelimit.lease_bucket import Bucket, Grant, Return, give_back, grant, unexpired
from authz.ratelimit.leases import LeaseLimiter, LeaseTuning

KEY = "k"
START_US = 1_000_000_000


class _Selector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("simulation stalled: nothing scheduled")
        if timeout > 0:
            self._loop.now_us += max(1, math.ceil(timeout * 1e6 - 1e-6))
        return super().select(0)


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now_us = START_US
        super().__init__(_Selector(self))

    def time(self) -> float:
        return self.now_us / 1e6


@dataclass
class Decision:
    at_us: int
    allowed: bool
    bound_us: int = 0  # denials: (W·T + Δ) at that instant, the under-admission bound


@dataclass
class Ledger:
    transit: int = 0  # leased tokens granted, reply not yet delivered
    returning: int = 0  # tokens handed back, not yet in the bucket
    spare_dropped: int = 0  # spare tokens that expired in the bucket
    restart_lapsed: int = 0  # lapsed tokens (limiters + bucket) counted at the last restart
    by_instant: dict[int, int] = field(default_factory=dict)  # Redis µs → bound at that grant


class NetworkStore:
    """The in-memory bucket behind a network with random delays, plus the bound's ledger."""

    def __init__(self, loop: VirtualLoop, rng: random.Random, max_delay_us: int) -> None:
        self.loop, self.rng, self.max_delay_us = loop, rng, max_delay_us
        self.bucket = Bucket()
        self.ledger = Ledger()
        self.limiters: list[LeaseLimiter] = []
        self.lifetime_us = 0
        self.calls = 0

    async def _travel(self) -> None:
        await asyncio.sleep(self.rng.randint(0, self.max_delay_us) / 1e6)

    def lapsed(self) -> int:
        return sum(x.leases.lapsed for x in self.limiters) + self.ledger.spare_dropped

    def bound_us(self, interval_us: int) -> int:
        """W·T + Δ now: every token drawn from the bucket since the chain restarted and not
        spent is pooled, spare, travelling, or has lapsed since."""
        held = sum(x.held(KEY) for x in self.limiters)
        ledger = self.ledger
        unspent = (
            held
            + self.bucket.spare
            + ledger.transit
            + ledger.returning
            + self.lapsed()
            - ledger.restart_lapsed
        )
        return unspent * interval_us + self.lifetime_us

    def _drop_spare(self, now: int, t: int) -> None:
        b = self.bucket
        spare = b.spare if b.interval == t else 0
        self.ledger.spare_dropped += spare - unexpired(b.first, spare, now, t)[1]

    async def grant(
        self, key_id: str, limit: Limit, wants: Sequence[int], want_lease: int, floor_us: int
    ) -> Grant:
        await self._travel()
        self.calls += 1
        now, t, b = self.loop.now_us, limit.interval_us, self.bucket
        self._drop_spare(now, t)
        spare = unexpired(b.first, b.spare if b.interval == t else 0, now, t)[1]
        tat_before = b.tat
        result = grant(b, now, limit, wants, want_lease, floor=floor_us)
        self._note_restart(result, tat_before, min(result.taken, spare), now, floor_us, t)
        self.ledger.by_instant[now] = max(self.ledger.by_instant.get(now, 0), self.bound_us(t))
        self.ledger.transit += result.leased
        await self._travel()
        self.ledger.transit -= result.leased
        return result

    def _note_restart(
        self, g: Grant, tat_before: int, from_spare: int, now: int, floor: int, t: int
    ) -> None:
        """A grant restarts the TAT chain when a part's floor is at or past the TAT before it:
        older unspent tokens no longer weigh on the bucket."""
        fresh = g.taken - from_spare
        tat_mid = max(tat_before, now) + fresh * t
        if (fresh and tat_before <= now) or (g.fresh_lease and now + floor >= tat_mid):
            self.ledger.restart_lapsed = self.lapsed()

    async def give_back(self, returns: Sequence[Return]) -> list[int]:
        count = sum(r.count for r in returns)
        self.ledger.returning += count
        await self._travel()
        now = self.loop.now_us
        kept = []
        for r in returns:
            self._drop_spare(now, r.limit.interval_us)
            kept.append(give_back(self.bucket, now, r.limit, r.first_us, r.count))
        self.ledger.returning -= count
        await self._travel()
        return kept


@dataclass(frozen=True)
class Scenario:
    burst: int
    interval_us: int
    lifetime_us: int
    lease_max: int
    max_delay_us: int
    arrivals: tuple[tuple[int, ...], ...]  # per instance: request times, µs from the start
    seed: int

    @property
    def limit(self) -> Limit:
        return Limit(HOUR_US // self.interval_us, self.burst)


@dataclass
class Outcome:
    decisions: list[Decision]
    store: NetworkStore
    limiters: list[LeaseLimiter]
    max_held: int


def run(scenario: Scenario) -> Outcome:
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(_simulate(loop, scenario))
    finally:
        loop.close()


async def _simulate(loop: VirtualLoop, sc: Scenario) -> Outcome:
    store = NetworkStore(loop, random.Random(sc.seed), sc.max_delay_us)
    store.lifetime_us = sc.lifetime_us
    decisions: list[Decision] = []
    held = [0]

    def trace(_key: str, allowed: bool, local: float, redis_us: int | None) -> None:
        at = round(local * 1e6) if redis_us is None else redis_us
        bound = 0
        if redis_us is not None and not allowed:  # denied at the Redis instant
            bound = store.ledger.by_instant[redis_us]
        elif not allowed:  # denied locally: Redis's next-token time, plus the batch wait
            bound = store.bound_us(sc.interval_us) + (batch - 1) * sc.interval_us
        decisions.append(Decision(at, allowed, bound))
        held[0] = max(held[0], *(x.held(KEY) for x in store.limiters))

    life = sc.lifetime_us / 1e6
    batch = max(1, math.ceil(LeaseTuning().min_gap * 1e6 / sc.interval_us))
    tuning = LeaseTuning(
        lifetime=life,
        lease_max=sc.lease_max,
        idle_after=2 * life,
        forget_after=20 * life,
        tick=life / 2,
    )
    store.limiters = [
        LeaseLimiter(store, clock=loop.time, tuning=tuning, trace=trace) for _ in sc.arrivals
    ]
    background = [loop.create_task(x.run()) for x in store.limiters]
    await asyncio.gather(
        *(
            _drive(loop, x, times, sc.limit)
            for x, times in zip(store.limiters, sc.arrivals, strict=True)
        )
    )
    for task in background:
        task.cancel()
    for limiter in store.limiters:
        await limiter.close()
    return Outcome(decisions, store, store.limiters, held[0])


async def _drive(
    loop: VirtualLoop, limiter: LeaseLimiter, times: Sequence[int], limit: Limit
) -> None:
    requests = []
    for at in times:
        delay = (START_US + at - loop.now_us) / 1e6
        if delay > 0:
            await asyncio.sleep(delay)
        requests.append(loop.create_task(limiter.decide(KEY, limit)))
    await asyncio.gather(*requests)


# --- the checks ------------------------------------------------------------------------------
def worst_window_us(admitted: Sequence[int], burst: int, interval_us: int) -> int:
    """Brute force over every window [τ_i, τ_j]: max of count·T − (τ_j − τ_i) − B·T (µs);
    > 0 means more than B + t/T admissions in some window of length t."""
    times = sorted(admitted)
    worst = -burst * interval_us
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            worst = max(worst, (j - i + 1) * interval_us - (times[j] - start))
    return worst - burst * interval_us


def excess_us(admitted: Sequence[int], at: int, burst: int, interval_us: int) -> int:
    """How far from justified a denial at ``at`` is: B·T + at − max(at, V) − T, where V is the
    TAT of a GCRA fed the admissions up to ``at``; >= 0 means that GCRA would have admitted."""
    tat = 0
    for when in sorted(a for a in admitted if a <= at):
        tat = max(tat, when) + interval_us
    return burst * interval_us + at - max(at, tat) - interval_us
