"""The shared bucket behind leased limits: GCRA whose tokens carry deadlines, in Redis.

One Redis hash per key (``hokusai:rl:lease:<key id>``, µs on Redis's clock) holds GCRA's
theoretical arrival time ``tat`` and a *spare* range of tokens handed back before use.

Slots. A grant of ``n`` tokens moves ``tat`` from ``start = max(tat, floor)`` to
``start + n·T``: token ``i`` owns the slot ``[start + i·T, start + (i+1)·T)`` and its
**deadline** is the slot's start — it may be spent until then, never later (the limiter keeps
that on its own clock, conservatively). Slots never overlap and every grant conforms
(``tat − B·T <= now`` after it). Those two facts give exactness (see ``leases.py``).

* on-demand tokens (``wants``, one cost per request waiting on this call, in order), spent at the
  Redis instant: plain GCRA (``floor = now``), each request all or nothing, in order, as if they
  had come one by one; from idle exactly ``B`` at once.
* leased tokens (``want_lease``): ``floor = now + lifetime``, so even from a full bucket a lease
  lives at least ``lifetime``; the price is that much refill claimed early.
* spare tokens: handed back by an instance, they keep their slots and deadlines; the next grant
  takes them first (they are already paid for), so returned tokens are not lost. The spare is
  one range: merging two shortens some deadlines (``merge``), never lengthens one.

``grant``/``give_back`` below are the arithmetic; ``GRANT_LUA``/``GIVE_BACK_LUA`` are the same
lines in Lua (an integration test runs both on the same operations and compares them).
``RedisLeaseStore`` and ``MemoryLeaseStore`` are the two implementations of ``LeaseStore``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis

from authz.ratelimit.gcra import Limit

LEASE_PREFIX = "hokusai:rl:lease:"
N = TypeVar("N", int, float)


def merge(a0: N, na: int, b0: N, nb: int, t: N) -> tuple[N, int]:
    """Two ranges of deadlines ``first + k·t`` as one range that is never later, element by
    element, than the union sorted: its first deadline is the least ``u_k − k·t`` (ties: a first).
    Disjoint slots (gaps >= t) give ``min(a0, b0)``; overlapping ranges lose a little life."""
    if na <= 0:
        return b0, nb
    if nb <= 0:
        return a0, na
    a_last, b_last = a0 + (na - 1) * t, b0 + (nb - 1) * t
    b_before = min(nb, max(0, -((b0 - a_last) // t)))  # b deadlines strictly before a's last
    a_upto = min(na, max(0, (b_last - a0) // t + 1))  # a deadlines at or before b's last
    return min(a0 - b_before * t, b0 - a_upto * t), na + nb


def unexpired(first: N, count: int, now: N, t: N) -> tuple[N, int]:
    """The range without its tokens whose deadline is before ``now``."""
    if count <= 0:
        return first, 0
    if first >= now:
        return first, count
    gone = min(count, -((first - now) // t))
    return first + gone * t, count - int(gone)


@dataclass(slots=True)
class Bucket:
    """The Redis hash of one key, µs on Redis's clock (0: absent)."""

    tat: int = 0
    first: int = 0  # deadline of the first spare token; the k-th: first + k·interval
    spare: int = 0
    interval: int = 0  # the T the spare range was made with (another T: the range is dropped)


@dataclass(frozen=True, slots=True)
class Grant:
    """One grant's answer; every time in µs, relative to ``now_us`` (Redis's clock). A lease
    comes as two ranges — spare tokens, then fresh ones — each with deadlines ``first + k·T``."""

    now_us: int
    taken: int  # on-demand tokens, for the waiting requests in order
    spare_lease: int
    spare_first_us: int
    fresh_lease: int
    fresh_first_us: int
    ahead_us: int  # tat − now afterwards: the full burst is back after this long
    wait_us: int  # until one more token could be taken on demand (0: now)
    spare: int  # spare tokens left after the grant

    @property
    def leased(self) -> int:
        return self.spare_lease + self.fresh_lease


def _room(start: int, now: int, t: int, burst: int) -> int:
    """Tokens that conform when charged from ``start``: start + n·t − burst·t <= now."""
    return max(0, (now + burst * t - start) // t)


def grant(
    b: Bucket, now: int, limit: Limit, wants: Sequence[int], want_lease: int, *, floor: int
) -> Grant:
    """Take on-demand tokens (each request's cost if it fits, spare first, then fresh), then
    leased ones (spare, then fresh from ``max(tat, now + floor)``, ``min(wanted, available)``)."""
    t, burst = limit.interval_us, limit.burst
    first, spare = unexpired(b.first, b.spare if b.interval == t else 0, now, t)
    tat, taken = max(b.tat, now), 0
    for cost in wants:
        if cost <= spare + _room(tat, now, t, burst):
            used = min(cost, spare)
            first, spare, tat = first + used * t, spare - used, tat + (cost - used) * t
            taken += cost
    lease_first, lease = first, min(want_lease, spare)
    first, spare = first + lease * t, spare - lease
    start = max(tat, now + floor)
    more = min(want_lease - lease, _room(start, now, t, burst))
    if more > 0:
        tat = start + more * t
    b.tat, b.first, b.spare, b.interval = tat, first, spare, t
    wait = 0 if spare else max(0, tat + t - burst * t - now)
    return Grant(
        now,
        taken,
        lease,
        lease_first - now if lease else 0,
        more,
        start - now if more else 0,
        tat - now,
        wait,
        spare,
    )


def give_back(b: Bucket, now: int, limit: Limit, first: int, count: int) -> int:
    """Add unspent tokens (deadlines ``first + k·T``, Redis's clock) to the spare range; the
    expired ones are dropped. Returns how many were kept."""
    t = limit.interval_us
    spare_first, spare = unexpired(b.first, b.spare if b.interval == t else 0, now, t)
    first, count = unexpired(first, count, now, t)
    b.first, b.spare = merge(spare_first, spare, first, count, t)
    b.interval = t
    return count


# The same arithmetic in Lua (numbers are doubles: exact below 2^53 µs; fdiv corrects the one
# rounding a double division can make). KEYS[1]: the hash; the last ARGV: now µs or "" (TIME).
_LUA_PRELUDE = """
redis.replicate_commands()
local function fdiv(x, d)
  local q = math.floor(x / d)
  if (q + 1) * d <= x then return q + 1 elseif q * d > x then return q - 1 end
  return q
end
local function merge(a0, na, b0, nb, t)
  if na <= 0 then return b0, nb end
  if nb <= 0 then return a0, na end
  local a_last, b_last = a0 + (na - 1) * t, b0 + (nb - 1) * t
  local b_before = math.min(nb, math.max(0, -fdiv(b0 - a_last, t)))
  local a_upto = math.min(na, math.max(0, fdiv(b_last - a0, t) + 1))
  return math.min(a0 - b_before * t, b0 - a_upto * t), na + nb
end
local function unexpired(first, count, now, t)
  if count <= 0 then return first, 0 end
  if first >= now then return first, count end
  local gone = math.min(count, -fdiv(first - now, t))
  return first + gone * t, count - gone
end
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local x = redis.call('TIME')
  return tonumber(x[1]) * 1000000 + tonumber(x[2])
end
local function load(t)
  local h = redis.call('HMGET', KEYS[1], 'tat', 'first', 'spare', 'interval')
  local spare = tonumber(h[3]) or 0
  if tonumber(h[4]) ~= t then spare = 0 end
  return tonumber(h[1]) or 0, tonumber(h[2]) or 0, spare
end
local function save(tat, first, spare, t, now)
  redis.call('HSET', KEYS[1], 'tat', string.format('%d', tat), 'first',
    string.format('%d', first), 'spare', spare, 'interval', t)
  local last = math.max(tat, first + (spare - 1) * t)
  redis.call('PEXPIRE', KEYS[1], math.max(0, math.floor((last - now) / 1000)) + 1000)
end
"""

# ARGV: interval, burst, wants ("3,1,1": costs), want_lease, floor, now. Returns the Grant.
GRANT_LUA = (
    _LUA_PRELUDE
    + """
local t, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local want_lease, floor = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = clock(ARGV[6])
local function room(start) return math.max(0, fdiv(now + burst * t - start, t)) end
local tat, first, spare = load(t)
first, spare = unexpired(first, spare, now, t)
tat = math.max(tat, now)
local taken = 0
for word in string.gmatch(ARGV[3], '%d+') do
  local cost = tonumber(word)
  if cost <= spare + room(tat) then
    local used = math.min(cost, spare)
    first, spare, tat = first + used * t, spare - used, tat + (cost - used) * t
    taken = taken + cost
  end
end
local lease_first, lease = first, math.min(want_lease, spare)
first, spare = first + lease * t, spare - lease
local start = math.max(tat, now + floor)
local more = math.min(want_lease - lease, room(start))
if more > 0 then tat = start + more * t end
save(tat, first, spare, t, now)
local wait = 0
if spare == 0 then wait = math.max(0, tat + t - burst * t - now) end
local spare_rel, fresh_rel = 0, 0
if lease > 0 then spare_rel = lease_first - now end
if more > 0 then fresh_rel = start - now end
return {now, taken, lease, spare_rel, more, fresh_rel, tat - now, wait, spare}
"""
)

# ARGV: interval, first, count, now. Returns how many tokens were kept as spare.
GIVE_BACK_LUA = (
    _LUA_PRELUDE
    + """
local t = tonumber(ARGV[1])
local now = clock(ARGV[4])
local tat, spare_first, spare = load(t)
spare_first, spare = unexpired(spare_first, spare, now, t)
local first, count = unexpired(tonumber(ARGV[2]), tonumber(ARGV[3]), now, t)
spare_first, spare = merge(spare_first, spare, first, count, t)
save(tat, spare_first, spare, t, now)
return count
"""
)


@dataclass(frozen=True, slots=True)
class Return:
    """Unspent tokens an instance hands back: deadlines ``first_us + k·T`` on Redis's clock."""

    key_id: str
    limit: Limit
    first_us: int
    count: int


class LeaseStore(Protocol):
    async def grant(
        self, key_id: str, limit: Limit, wants: Sequence[int], want_lease: int, floor_us: int
    ) -> Grant: ...

    async def give_back(self, returns: Sequence[Return]) -> list[int]: ...


class RedisLeaseStore:
    """The two scripts on a shared Redis: one call per grant, one pipeline per batch of returns.

    ``client`` is the process's (``authz/storage/redis.py``), closed by whoever built it.
    ``now_us`` None: Redis's own clock (every instance shares it); tests drive it instead."""

    def __init__(self, client: aioredis.Redis, now_us: Callable[[], int] | None = None) -> None:
        self._redis = client
        self._grant = client.register_script(GRANT_LUA)
        self._give_back = client.register_script(GIVE_BACK_LUA)
        self._now_us = now_us

    def _now(self) -> str:
        return "" if self._now_us is None else str(self._now_us())

    async def grant(
        self, key_id: str, limit: Limit, wants: Sequence[int], want_lease: int, floor_us: int
    ) -> Grant:
        reply: list[Any] = await self._grant(
            keys=[LEASE_PREFIX + key_id],
            args=[
                limit.interval_us,
                limit.burst,
                ",".join(map(str, wants)),
                want_lease,
                floor_us,
                self._now(),
            ],
        )
        return Grant(*(int(v) for v in reply))

    async def give_back(self, returns: Sequence[Return]) -> list[int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for item in returns:
                await self._give_back(
                    keys=[LEASE_PREFIX + item.key_id],
                    client=pipe,
                    args=[item.limit.interval_us, item.first_us, item.count, self._now()],
                )
            replies: list[Any] = await pipe.execute()
        return [int(v) for v in replies]


class MemoryLeaseStore:
    """The same arithmetic on a dict, for unit tests (``now_us`` is the injected clock)."""

    def __init__(self, now_us: Callable[[], int]) -> None:
        self.buckets: dict[str, Bucket] = {}
        self._now_us = now_us

    async def grant(
        self, key_id: str, limit: Limit, wants: Sequence[int], want_lease: int, floor_us: int
    ) -> Grant:
        bucket = self.buckets.setdefault(key_id, Bucket())
        return grant(bucket, self._now_us(), limit, wants, want_lease, floor=floor_us)

    async def give_back(self, returns: Sequence[Return]) -> list[int]:
        return [
            give_back(
                self.buckets.setdefault(r.key_id, Bucket()),
                self._now_us(),
                r.limit,
                r.first_us,
                r.count,
            )
            for r in returns
        ]
