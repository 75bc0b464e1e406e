"""``last_used_at`` off the hot path: remembered in memory, written in batches.

At most one write per key per ``interval``; a failed batch is retried with the next one. The
check path only does a dict lookup and, once per interval per key, a set insert.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from authz.errors import StoreUnavailable
from authz.keys.record import KeyRecord
from authz.storage.store import KeyStore

log = logging.getLogger(__name__)


class LastUsedRecorder:
    def __init__(
        self, store: KeyStore, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._interval = interval
        self._clock = clock
        self._marked: dict[str, float] = {}
        self._pending: set[str] = set()

    def seen(self, record: KeyRecord) -> None:
        now = self._clock()
        last = self._marked.get(record.key_id)
        if last is None or now - last >= self._interval:
            self._marked[record.key_id] = now
            self._pending.add(record.key_id)

    async def flush(self) -> int:
        if not self._pending:
            return 0
        batch, self._pending = self._pending, set()
        try:
            await self._store.touch(sorted(batch))
        except StoreUnavailable:
            self._pending |= batch
            return 0
        return len(batch)

    async def run(self, period: float = 1.0) -> None:
        while True:
            await asyncio.sleep(period)
            await self.flush()
