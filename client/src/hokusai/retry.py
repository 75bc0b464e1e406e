"""When the client's own requests retry, and how long they wait: bounded in attempts and time.

The client's own calls (the health checks, ``whoami`` and the access check of ``setup()``) retry
on connection failures, 429 and 503 — never on 401/403 or anything else. Between attempts:

* the server's ``Retry-After`` when it sent one, exactly (never sooner: the gateway's limiter
  would only refuse again); if waiting that long would cross the time budget, no retry — the
  caller raises at once with ``retry_after``;
* otherwise exponential backoff with full jitter: a uniform draw from ``[0, min(cap,
  base·2^(n−1))]`` before attempt ``n+1`` (AWS's "full jitter": clients that failed together do
  not come back together).

With the defaults (4 attempts, base 0.5 s, cap 4 s, budget 20 s) the backoff sleeps at most
0.5 + 1 + 2 = 3.5 s in all, and every attempt's time-out is cut to what is left of the 20 s, so
one call never takes longer than the budget plus one connect time-out.

MLflow's own requests are not retried here: MLflow already retries 408/429/5xx and honours
Retry-After; ``hokusai.tracking`` only bounds its settings (no second loop around it).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    base: float = 0.5  # seconds before the jittered doubling
    cap: float = 4.0  # largest backoff between two attempts
    budget: float = 20.0  # seconds for all attempts and waits of one call
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    draw: Callable[[], float] = field(default=random.random, compare=False)  # uniform [0, 1)

    def backoff(self, attempt: int) -> float:
        """Full-jitter wait after failed attempt ``attempt`` (1-based)."""
        ceiling = min(self.cap, self.base * 2.0 ** (attempt - 1))
        return self.draw() * ceiling

    def timeout(self, remaining: float) -> tuple[float, float]:
        """(connect, read) time-outs for an attempt with ``remaining`` seconds of budget left."""
        floor = 0.1  # an attempt always gets a moment, even at the edge of the budget
        return (
            max(floor, min(self.connect_timeout, remaining)),
            max(floor, min(self.read_timeout, remaining)),
        )


DEFAULT = RetryPolicy()


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or
    unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
