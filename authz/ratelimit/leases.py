"""Exact per-key limits without a Redis round trip per request: token leases.

Each instance holds, per key, a small *pool* of tokens taken atomically from the shared GCRA
bucket (``lease_bucket.py``: one Lua call grants ``min(wanted, available)``) and spends
them locally, with no I/O. Every token carries a deadline — the start of the slot it owns in the
bucket's TAT — and is spent before it or never.

* **Sizing.** A decaying average of the key's requests here (time constant Δ, the lease
  lifetime: ``lifetime``, at most a quarter of the burst's refill time B·T) predicts the
  requests of the next Δ. Under 2: a slow key, every request takes its one token on demand (one
  Lua call per request). Otherwise the pool's target is three quarters of that (deadlines are Δ
  away from a full bucket; the rest is margin), capped at ``lease_max``, ⌊B/8⌋ and B − Δ/T: what
  one instance holds stays small beside the burst (a burst under 8: never leased).
* **Prefetch.** When the pool falls to a third of its target, one call in the background asks
  for the rest, so a hot key's requests rarely wait. A lease is charged from ``max(TAT, now + Δ)``:
  it lives at least Δ even from a full bucket, paid by claiming Δ of refill early.
* **Single flight** (``authz/resilience/singleflight.py``). At most one Redis operation per key
  and instance, a grant or a return. Requests that find no token wait for it; the call asks for
  each waiter's cost on demand (and no lease: a prefetch follows if the key is hot), so B
  simultaneous requests from idle — at one instance or several — get exactly B and the next a
  429 with Redis's retry-after; latecomers take leased tokens or wait for the next call. After a
  reply that left no token, requests are denied locally until Redis's next-token time (for a key
  faster than ``min_gap``, until ⌈min_gap/T⌉ tokens have refilled: ~1/min_gap calls a second at
  most).
* **Lapse and return.** Tokens past their deadline lapse (``leases.lapsed``); a key idle for
  ``idle_after`` and ``close()`` hand the pool back (one pipeline of Lua calls) as *spare*
  tokens, which the next grant to any instance takes first.

**Exactness** (admissions in any window of length t ≤ B + R·t, across all instances): each
spent token owns a slot ``(s − T, s]`` of the TAT chain, the slots are disjoint, and for a token
spent at τ: ``s − T >= τ`` (spent by its deadline — an on-demand token at the Redis instant, which
is when it counts) and ``s <= τ + B·T`` (its grant conformed at or before τ: TAT ≤ now + B·T).
Tokens spent in ``[a, b]`` so own disjoint slots inside ``[a, b + B·T]``: at most B + (b − a)/T.
Deadlines are kept on the local monotonic clock: ``sent + (deadline − redis_now)`` is never later
than the real deadline, since Redis decided after the call was sent. This assumes the two clocks
agree on durations: a rate difference ε moves a deadline d seconds away by ε·d (d ≤ B·T: 50 s for
the default key, so 0.5 ms at NTP's typical 10 ppm).

**Under-admission** is bounded: a request is denied only when a GCRA fed the admissions so far
would deny it given ``U`` more tokens: ``U = Σ pools + spare + in transit + ⌈Δ/T⌉ + lapsed``
(+ ⌈min_gap/T⌉ − 1 for a local denial), Σ pools ≤ N·L (L the cap above), lapsed = tokens that
expired unspent since the bucket last had room (docs/rate-limits.md, "Exact limits with leases").

**Redis down**: one breaker (``authz/resilience/breaker.py``: an outage costs one time-out per
``breaker`` seconds); tokens in the pool are still spent (they were granted); otherwise
``redis_down`` decides.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from authz.ratelimit.gcra import Limit, LimiterStats, Verdict, unlimited_verdict
from authz.ratelimit.lease_bucket import Grant, LeaseStore, Return, merge, unexpired
from authz.resilience.breaker import Breaker, Clock
from authz.resilience.singleflight import SingleFlight

log = logging.getLogger(__name__)

# (key id, allowed, local time, Redis µs of an on-demand draw or None): when each decision
# counts — for tests that check the bound; None in production.
Trace = Callable[[str, bool, float, int | None], None]
Waiter = tuple[int, "asyncio.Future[Verdict]"]
# A Verdict from all six fields in order, without the generated ``__new__``: a pooled token's
# verdict (the hot key's every request) is built this way.
_verdict = partial(tuple.__new__, Verdict)


@dataclass(frozen=True, slots=True)
class LeaseTuning:
    lifetime: float = 1.0  # Δ: a lease lives at least this long; costs Δ/T tokens while held.
    # Largest lease (only keys with a burst over 8·lease_max reach it: ⌊B/8⌋ binds first). A
    # refill costs the process ~150–250 µs of Redis client CPU; at 64 a key at 6000 req/s per
    # instance paid ~8 µs per request for it (bench: L-http − D-http, 11.8 µs of authz CPU with
    # 64, 4.2 with 1024), at 1024 under 0.5 µs; the price is what an instance may hold back
    # (the under-admission bound), still at most B/8.
    lease_max: int = 1024
    idle_after: float = 0.5  # no request for this long: the pool goes back as spare
    forget_after: float = 60.0  # no request and no token for this long: the key is forgotten
    breaker: float = 1.0  # after a Redis failure, no call for this long
    tick: float = 0.25  # how often run() returns idle pools and forgets keys
    # Over its limit, a fast key (T < min_gap) asks Redis again only once ⌈min_gap/T⌉ tokens
    # have refilled: at most ~1/min_gap calls a second per key and instance, for up to
    # min_gap/T tokens left waiting in the bucket (the under-admission bound counts them).
    min_gap: float = 0.01


@dataclass(slots=True)
class LeaseStats:
    calls: int = 0  # grants asked of Redis
    drawn: int = 0  # on-demand tokens
    leased: int = 0  # tokens received in leases
    local: int = 0  # requests answered from the pool
    local_denials: int = 0  # denied without a call (no token before Redis's next-token time)
    lapsed: int = 0  # tokens that expired unspent (or whose waiter went away)
    returned: int = 0  # tokens handed back and kept as spare


@dataclass(slots=True, eq=False)
class _Key:
    id: str
    limit: Limit
    interval: float  # T, seconds
    life: float  # Δ for this key: the lifetime, at most a quarter of the burst's refill time
    cap: int  # the largest lease for this limit
    batch: int  # over the limit, the next call waits for this many tokens of refill
    first: float = 0.0  # the pool's first range: deadline of its next token (local clock)
    count: int = 0  # ... and its tokens; the k-th is due at first + k·T
    rest: list[tuple[float, int]] = field(default_factory=list)  # later ranges, in order
    later: int = 0  # tokens in rest
    lease: int = 0  # prefetch size (0: a slow key, on demand only)
    low: int = 0  # prefetch when count <= low
    next_at: float = 0.0  # no token before this (local clock): deny locally until then
    rate: float = 0.0  # requests per second, decaying average
    hits: int = 0  # requests since rate was updated
    rated: float = 0.0
    used: float = 0.0  # last request
    waiters: list[Waiter] = field(default_factory=list)
    seen: float = 0.0  # the last reply (local clock), and what it said:
    ahead: float = 0.0  # seconds until the full burst is back
    avail: int = 0  # tokens the bucket could still grant at once


class LeaseLimiter:
    """The ``RateLimiter`` of exact mode (see the module docstring)."""

    def __init__(
        self,
        store: LeaseStore,
        redis_down: str = "open",
        clock: Clock = time.monotonic,
        tuning: LeaseTuning | None = None,
        trace: Trace | None = None,
    ) -> None:
        self._store = store
        self._deny_when_down = redis_down == "deny"
        self._clock = clock
        self._tune = tuning or LeaseTuning()
        self._breaker = Breaker(self._tune.breaker, clock)
        self._trace = trace
        self._keys: dict[str, _Key] = {}
        # One Redis operation per key at a time, a grant or a return (keyed by the state, not
        # the id: a key whose limit changed gets fresh state and its own calls).
        self._flight: SingleFlight[_Key, None] = SingleFlight()
        self._offset = 0.0  # Redis clock − ours, a lower bound from the last reply (seconds)
        self._closing = False  # no more prefetches
        self.stats = LimiterStats()
        self.leases = LeaseStats()

    # --- decisions --------------------------------------------------------------------------
    def decide_now(self, key_id: str, limit: Limit, cost: int = 1) -> Verdict | None:
        if not limit.per_hour:  # limit.unlimited, without the property's call
            return unlimited_verdict(limit)
        key = self._keys.get(key_id)
        if key is None or key.limit != limit:
            key = self._new_key(key_id, limit)
        now = self._clock()
        if key.count >= cost and now <= key.first:
            key.hits += cost
            key.used = now
            return self._take(key, now, cost)
        verdict = self._without_pool(key, now, cost)
        if verdict is not None:
            key.hits += cost
            key.used = now
        return verdict

    async def decide(self, key_id: str, limit: Limit, cost: int = 1) -> Verdict:
        verdict = self.decide_now(key_id, limit, cost)
        if verdict is not None:
            return verdict
        key = self._keys[key_id]
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        key.waiters.append((cost, future))
        key.hits += cost
        key.used = self._clock()
        if not self._flight.running(key):
            self._start(key)
        return await future

    @property
    def tracked(self) -> int:
        """Keys with state here (memory is bounded by keys seen within ``forget_after``)."""
        return len(self._keys)

    def held(self, key_id: str) -> int:
        """Tokens this instance holds for the key (expired ones included until noticed)."""
        key = self._keys.get(key_id)
        return 0 if key is None else key.count + key.later

    def _take(self, key: _Key, now: float, cost: int) -> Verdict:
        """Spend pooled tokens; the verdict's numbers are estimates: remaining = the pool plus
        what the last reply said the bucket held plus refill since, at most B; reset = the last
        reply's, counted down."""
        key.count -= cost
        key.first += cost * key.interval
        self.leases.local += 1
        if not key.count and key.rest:
            self._promote(key)
        if key.count + key.later <= key.low:
            self._prefetch(key, now)
        if self._trace is not None:
            self._trace(key.id, True, now, None)
        since = now - key.seen
        limit = key.limit
        remaining = key.count + key.later + key.avail + int(since / key.interval)
        reset = key.ahead - since
        # Verdict(allowed, limit, remaining, reset_after, retry_after, degraded), built in C
        return _verdict(
            (
                True,
                limit,
                remaining if remaining < limit.burst else limit.burst,
                reset if reset > 0 else 0.0,
                0.0,
                False,
            )
        )

    def _prefetch(self, key: _Key, now: float) -> None:
        if (
            key.lease
            and key.count + key.later <= key.low
            and not self._flight.running(key)
            and now >= key.next_at
            and self._breaker.closed()
            and not self._closing
        ):
            self._start(key)

    def _without_pool(self, key: _Key, now: float, cost: int) -> Verdict | None:
        """No usable token: wait for the call in flight or a new one (None), or deny."""
        self._expire(key, now)
        while key.count < cost and key.rest:  # a cost spanning ranges (rare): one range
            first, count = key.rest.pop(0)
            key.later -= count
            key.first, key.count = merge(key.first, key.count, first, count, key.interval)
        if key.count >= cost and now <= key.first:
            return self._take(key, now, cost)
        if self._flight.running(key):
            return None
        if now < key.next_at:
            return self._deny_locally(key, now, cost)
        if not self._breaker.closed():
            return self._fallback(key.limit)
        return None

    def _deny_locally(self, key: _Key, now: float, cost: int) -> Verdict:
        self.leases.local_denials += 1
        if self._trace is not None:
            self._trace(key.id, False, now, None)
        retry = key.next_at - now + (cost - 1) * key.interval
        return Verdict(False, key.limit, 0, max(0.0, key.ahead - (now - key.seen)), retry)

    def _fallback(self, limit: Limit) -> Verdict:
        if self._deny_when_down:
            self.stats.fail_closed += 1
            return Verdict(False, limit, 0, 0.0, 1.0, degraded=True)
        self.stats.fail_open += 1
        return Verdict(True, limit, degraded=True)

    # --- per-key state ----------------------------------------------------------------------
    def _new_key(self, key_id: str, limit: Limit) -> _Key:
        """Fresh state (a changed limit too: the old pool's spacing no longer holds; it lapses)."""
        old = self._keys.get(key_id)
        if old is not None:  # detached: its call in flight still answers its waiters
            self.leases.lapsed += old.count + old.later
            old.count, old.rest, old.later, old.lease = 0, [], 0, 0
        interval = limit.interval_us / 1e6
        life = min(self._tune.lifetime, limit.burst * interval / 4)
        after_floor = limit.burst - math.ceil(life / interval)  # Δ + L·T <= B·T from full
        # ⌊B/8⌋: a key with a burst under 8 is never leased (each request one call), so it gets
        # exactly its burst even from sequential requests spread over instances.
        cap = max(0, min(self._tune.lease_max, limit.burst // 8, after_floor))
        batch = max(1, math.ceil(self._tune.min_gap / interval))
        key = self._keys[key_id] = _Key(
            key_id, limit, interval, life, cap, batch, rated=self._clock()
        )
        return key

    def _expire(self, key: _Key, now: float) -> None:
        while key.count and now > key.first:
            first, count = unexpired(key.first, key.count, now, key.interval)
            self.leases.lapsed += key.count - count
            key.first, key.count = first, count
            if not count and key.rest:
                self._promote(key)

    @staticmethod
    def _promote(key: _Key) -> None:
        key.first, key.count = key.rest.pop(0)
        key.later -= key.count

    @staticmethod
    def _pool(key: _Key, first: float, count: int) -> None:
        """Add a range to the pool, kept sorted; ranges that touch or overlap become one."""
        t, ranges = key.interval, sorted([(key.first, key.count), *key.rest, (first, count)])
        pool: list[tuple[float, int]] = []
        for start, n in ranges:
            if n and pool and start <= pool[-1][0] + pool[-1][1] * t:
                pool[-1] = merge(pool[-1][0], pool[-1][1], start, n, t)
            elif n:
                pool.append((start, n))
        (key.first, key.count), key.rest = (pool[0] if pool else (0.0, 0)), pool[1:]
        key.later = sum(n for _, n in key.rest)

    def _size_lease(self, key: _Key, now: float) -> int:
        """Update the rate (decaying counter, time constant Δ) and the pool's target: what
        three quarters of Δ needs (from a full bucket a lease's deadlines are only Δ away; the
        rest is margin for a rate that wobbles); a refill asks for what is missing."""
        life, elapsed = key.life, now - key.rated
        weight = -math.expm1(-elapsed / life)  # the new sample's weight: 1 − e^(−elapsed/Δ)
        sample = key.hits * weight / elapsed if elapsed > 0 else key.hits / life
        key.rate = key.rate * (1 - weight) + sample
        key.hits, key.rated = 0, now
        expected = key.rate * life
        key.lease = min(key.cap, math.ceil(0.75 * expected)) if expected >= 2 else 0
        key.low = key.lease // 3
        return max(0, key.lease - key.count - key.later)

    # --- the Redis call (single flight) -----------------------------------------------------
    def _start(self, key: _Key) -> None:
        self._fly(key, lambda: self._call(key))

    def _fly(self, key: _Key, work: Callable[[], Awaitable[None]]) -> None:
        """``work`` as the key's one Redis operation, in the background; when it is over, the
        waiters that came meanwhile."""
        self._flight.start(key, work, then=lambda: self._settle(key))

    async def _call(self, key: _Key) -> None:
        """One grant: for the waiters present now (on demand), or else a lease. Never both, so
        simultaneous requests at several instances share the burst before anyone leases."""
        batch, key.waiters = [w for w in key.waiters if not w[1].done()], []
        sent = self._clock()
        wants, want_lease = [cost for cost, _ in batch], self._size_lease(key, sent)
        if wants:
            want_lease = 0
        grant = None
        try:
            if wants or want_lease:
                grant = await self._store.grant(
                    key.id, key.limit, wants, want_lease, int(key.life * 1e6)
                )
        except Exception as exc:  # any Redis failure: the policy decides, never an error
            self._failed(exc)
            for _cost, future in batch:
                _resolve(future, self._fallback(key.limit))
        if grant is not None:
            self._absorb(key, grant, sent)
            self._serve(key, batch, grant)

    def _absorb(self, key: _Key, grant: Grant, sent: float) -> None:
        """Pool the lease (deadlines mapped to our clock from the send time: never later than
        Redis's), and remember what the reply said."""
        received = self._clock()
        self._offset = grant.now_us / 1e6 - received
        self.leases.calls += 1
        key.seen, key.ahead = sent, grant.ahead_us / 1e6
        key.avail = (
            grant.spare
            + (key.limit.burst * key.limit.interval_us - grant.ahead_us) // key.limit.interval_us
        )
        key.next_at = sent + grant.wait_us / 1e6
        if grant.wait_us:  # over the limit: wait for a batch of refill, not for every token
            key.next_at += (key.batch - 1) * key.interval
        self.leases.leased += grant.leased
        if self._keys.get(key.id) is not key:  # the limit changed meanwhile: nobody spends it
            self.leases.lapsed += grant.leased
            return
        self._expire(key, received)
        for first_us, count in (
            (grant.spare_first_us, grant.spare_lease),
            (grant.fresh_first_us, grant.fresh_lease),
        ):
            if count:
                self._pool(key, sent + first_us / 1e6, count)

    def _serve(self, key: _Key, batch: list[Waiter], grant: Grant) -> None:
        """The on-demand tokens to the waiters in order (the same greedy rule as the script, so
        the same waiters); a waiter they do not cover is denied with Redis's numbers."""
        left, now, t = grant.taken, self._clock(), key.interval
        self.leases.drawn += grant.taken
        for cost, future in batch:
            allowed = cost <= left and not future.done()
            if allowed:
                left -= cost
                verdict = Verdict(True, key.limit, key.avail + left, max(0.0, key.ahead - left * t))
            else:
                verdict = Verdict(
                    False, key.limit, 0, key.ahead, grant.wait_us / 1e6 + (cost - 1) * t
                )
            if self._trace is not None and not future.done():
                self._trace(key.id, allowed, now, grant.now_us)
            _resolve(future, verdict)
        self.leases.lapsed += left  # drawn for a waiter that went away

    def _settle(self, key: _Key) -> None:
        """Waiters that arrived during the call: from the pool, denied, or the next call."""
        while key.waiters:
            cost, future = key.waiters[0]
            now = self._clock()
            if not future.done():
                if key.count >= cost and now <= key.first:
                    verdict: Verdict | None = self._take(key, now, cost)
                else:
                    verdict = self._without_pool(key, now, cost)
                if verdict is None:
                    if not self._flight.running(key):
                        self._start(key)
                    return
                _resolve(future, verdict)
            key.waiters.pop(0)
        self._prefetch(key, self._clock())

    def _failed(self, exc: Exception) -> None:
        self.stats.redis_errors += 1
        self._breaker.trip()
        log.warning("rate limit redis unavailable", extra={"error": type(exc).__name__})

    # --- background: returns, forgetting ----------------------------------------------------
    async def maintain(self) -> None:
        """Hand back the pools of idle keys (one pipeline), lapse expired tokens, forget keys
        idle for ``forget_after`` (bounded memory)."""
        now, tune = self._clock(), self._tune
        returns: list[_Key] = []
        for key_id, key in list(self._keys.items()):
            self._expire(key, now)
            if self._flight.running(key) or key.waiters:
                continue
            if key.count and now - key.used >= tune.idle_after:
                returns.append(key)
            elif not key.count and now - key.used >= tune.forget_after:
                del self._keys[key_id]
        await self._give_back(returns)

    async def _give_back(self, keys: list[_Key]) -> None:
        if not keys or not self._breaker.closed():  # Redis away: the tokens will lapse
            return
        items = [item for key in keys for item in self._emptied(key)]
        sent = asyncio.ensure_future(self._store.give_back(items))  # one pipeline for all keys
        for key in keys:  # each key's flight: this return (no grant for it meanwhile)
            self._fly(key, lambda: _finished(sent))
        try:
            kept = await sent
        except Exception as exc:
            self._failed(exc)
            kept = [0] * len(items)  # never put back: the script may have run
        self.leases.returned += sum(kept)
        self.leases.lapsed += sum(i.count for i in items) - sum(kept)

    def _emptied(self, key: _Key) -> list[Return]:
        """The key's pool as returns (Redis deadline = ours + a lower bound of the clock offset,
        rounded down); the pool is empty afterwards."""
        items = [
            Return(key.id, key.limit, math.floor((first + self._offset) * 1e6) - 1, count)
            for first, count in ((key.first, key.count), *key.rest)
        ]
        key.count, key.rest, key.later = 0, [], 0
        return items

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._tune.tick)
            await self.maintain()

    async def close(self) -> None:
        """Let calls in flight finish (and the ones their waiters start), then hand every pool
        back."""
        self._closing = True
        for _ in range(3):
            await self._flight.wait()
        idle = [k for k in self._keys.values() if k.count and not self._flight.running(k)]
        await self._give_back(idle)


async def _finished(call: asyncio.Future[list[int]]) -> None:
    await asyncio.wait([call])  # its outcome is the caller's to read


def _resolve(future: asyncio.Future[Verdict], verdict: Verdict) -> None:
    if not future.done():
        future.set_result(verdict)
