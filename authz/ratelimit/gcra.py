"""GCRA (the generic cell rate algorithm): the arithmetic of a per-key rate limit, pure.

GCRA keeps one number per key, the theoretical arrival time (TAT). A key limited to ``R`` per hour
with burst ``B`` has emission interval ``T = 3600 s / R``; a request of cost ``n`` at ``now`` is
allowed when ``max(TAT, now) + n·T − B·T <= now`` and then moves TAT there. From idle, exactly
``B`` requests pass at once, then one per ``T``: no fixed window, so no 2× at a boundary.

``gcra`` is the in-process decision (the approximate limiter's) and ``ADD_LUA`` the approximate
mode's sync; the exact limiter's bucket is GCRA whose tokens carry deadlines
(``lease_bucket.py``). ``Limit``, ``Verdict`` and ``LimiterStats`` are what every limiter
(``limiters.py``, ``leases.py``) takes, answers and counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from authz.keys.record import KeyRecord

HOUR_US = 3_600_000_000


class Limit(NamedTuple):
    """A key's limit. ``Limit`` and ``Verdict`` are named tuples: built on every limited Check,
    a tuple costs a third of a frozen dataclass (0.16 against 0.46 µs, measured here)."""

    per_hour: int  # 0: unlimited (only ever when written explicitly)
    burst: int

    @property
    def unlimited(self) -> bool:
        return self.per_hour == 0

    @property
    def interval_us(self) -> int:
        """Emission interval T in microseconds (rounded down: at most 1 µs early per request)."""
        return HOUR_US // self.per_hour


def limit_for(record: KeyRecord, default: Limit) -> Limit:
    """The key's own limit, else the default; a missing burst is the default burst, capped so a
    small hourly limit is not all spendable at once; burst is at least 1."""
    own = record.rate_limit_per_hour
    per_hour = default.per_hour if own is None else own
    if per_hour == 0:
        return Limit(0, 0)
    burst = min(default.burst, per_hour) if record.burst is None else record.burst
    return Limit(per_hour, max(1, burst))


class Verdict(NamedTuple):
    allowed: bool
    limit: Limit
    remaining: int = 0
    reset_after: float = 0.0  # seconds until the full burst is available again
    retry_after: float = 0.0  # seconds until the next request could pass (0 when allowed)
    degraded: bool = False  # Redis could not be asked: the redis_down policy decided

    @property
    def unavailable(self) -> bool:
        """Denied because the limiter could not count (``redis_down = deny``)."""
        return self.degraded and not self.allowed


@dataclass(slots=True)
class LimiterStats:
    """Counters for telemetry: decisions the redis_down policy made, and Redis failures."""

    redis_errors: int = 0
    fail_open: int = 0
    fail_closed: int = 0
    syncs: int = 0


def unlimited_verdict(limit: Limit) -> Verdict:
    return Verdict(True, limit)


def gcra(tat_us: int, now_us: int, limit: Limit, cost: int = 1) -> tuple[int, Verdict]:
    """One GCRA decision; returns the TAT to keep (unchanged on denial) and the verdict.

    ``gcra.lua`` below is the same arithmetic; unit tests pin this one with an injected clock.
    """
    interval = limit.interval_us
    tat = max(tat_us, now_us)
    new_tat = tat + cost * interval
    allow_at = new_tat - limit.burst * interval
    if now_us < allow_at:
        return tat_us, Verdict(False, limit, 0, (tat - now_us) / 1e6, (allow_at - now_us) / 1e6)
    remaining = (limit.burst * interval - (new_tat - now_us)) // interval
    return new_tat, Verdict(True, limit, int(remaining), (new_tat - now_us) / 1e6)


# The approximate mode's sync: add n hits without deciding, return the shared TAT - now (µs).
ADD_LUA = """
redis.replicate_commands()
local interval = tonumber(ARGV[1])
local hits = tonumber(ARGV[2])
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[3])
end
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
tat = tat + hits * interval
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
return tat - now
"""


def ceil_seconds(seconds: float) -> int:
    """Header seconds: whole, rounded up (a client retrying at the value is then in time)."""
    return max(0, math.ceil(seconds - 1e-9))
