"""``last_used_at`` (keys) and ``last_seen_at`` (sessions) off the hot path: remembered in
memory, written in batches.

At most one write per record per ``interval``; a failed batch is retried with the next one. The
check path only does a dict lookup and, once per interval per record, a set insert. ``last``
tells when this instance last marked a record as used (at most ``interval`` late): a session's
idle time is judged from it and the stored ``last_seen_at``, whichever is later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from authz.errors import StoreUnavailable
from authz.keys.record import KeyRecord

log = logging.getLogger(__name__)

Touch = Callable[[Iterable[str]], Awaitable[None]]


class LastUsedRecorder:
    def __init__(
        self, touch: Touch, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._touch = touch
        self._interval = interval
        self._clock = clock
        self._marked: dict[str, float] = {}
        self._pending: set[str] = set()

    def seen(self, record: KeyRecord) -> None:
        """A key was used (the hot path: its body is ``seen_id``'s, inlined: one call less)."""
        now = self._clock()
        last = self._marked.get(record.key_id)
        if last is None or now - last >= self._interval:
            self._marked[record.key_id] = now
            self._pending.add(record.key_id)

    def seen_id(self, record_id: str) -> None:
        now = self._clock()
        last = self._marked.get(record_id)
        if last is None or now - last >= self._interval:
            self._marked[record_id] = now
            self._pending.add(record_id)

    def last(self, record_id: str) -> float | None:
        """When this instance last marked ``record_id`` used (its clock), or None."""
        return self._marked.get(record_id)

    async def flush(self) -> int:
        if not self._pending:
            return 0
        batch, self._pending = self._pending, set()
        try:
            await self._touch(sorted(batch))
        except StoreUnavailable:
            self._pending |= batch
            return 0
        return len(batch)

    async def run(self, period: float = 1.0) -> None:
        while True:
            await asyncio.sleep(period)
            await self.flush()
