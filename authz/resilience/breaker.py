"""The one circuit breaker: after a failure, stop asking for ``pause`` seconds.

An outage then costs one time-out, not one per request, and a pool is never queued up behind a
dead server. Used by the check store (Postgres), the Redis record cache and the exact rate
limiter. There is no half-open probing: once the pause is over, the next call simply tries again
(and trips the breaker again if it fails).
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


class Breaker:
    __slots__ = ("_clock", "_open_until", "_pause")

    def __init__(self, pause: float, clock: Clock = time.monotonic) -> None:
        self._pause, self._clock, self._open_until = pause, clock, 0.0

    def closed(self) -> bool:
        """Whether a call may be tried now."""
        return self._clock() >= self._open_until

    def trip(self) -> None:
        """A call failed: refuse calls for the pause."""
        self._open_until = self._clock() + self._pause
