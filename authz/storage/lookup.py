"""Phase 3 of the check: find a record through the tiers — in-process, Redis, Postgres.

One lookup, generic over the record type: key records (by key id) and session records (by the
hash of the session id) are found the same way, each by its own ``RecordLookup``.

* A fresh in-process entry answers with no I/O (also "unknown", for ``negative_cache_ttl``).
* Concurrent misses for one id share one store query (single flight).
* When Postgres cannot answer, a record fetched within ``stale_window`` still serves; otherwise
  the answer is ``UNAVAILABLE`` and the check fails closed.
* A fetch that overlapped an invalidation is used for its own request but not cached, so a
  revocation racing a cache fill cannot be undone by it.
* ``reload`` reads the store past both caches (a cached session that looks idle is re-read
  before it is refused: another instance may have seen it in use).
"""

from __future__ import annotations

import asyncio
import enum
from typing import Generic

from authz.errors import StoreUnavailable
from authz.resilience.singleflight import SingleFlight
from authz.storage.cache import LocalCache, R, RedisCache
from authz.storage.store import RecordSource
from authz.telemetry import metrics


class Missing(enum.Enum):
    UNKNOWN = "unknown"
    UNAVAILABLE = "unavailable"


class RecordLookup(Generic[R]):
    def __init__(
        self,
        local: LocalCache[R],
        redis: RedisCache[R] | None,
        store: RecordSource[R],
        max_concurrent_fetches: int = 8,
    ) -> None:
        self.local, self.redis, self.store = local, redis, store
        self._flights: SingleFlight[tuple[str, bool], R | Missing] = SingleFlight()
        self._fetch_slots = asyncio.Semaphore(max_concurrent_fetches)
        self._invalidations = 0
        self._background: set[asyncio.Task[None]] = set()

    def cached(self, record_id: str) -> R | Missing | None:
        """The fresh in-process answer, or None when only I/O can tell."""
        entry = self.local.fresh(record_id)
        if entry is None:
            return None
        record = entry.record
        metrics.cache_hit("local" if record is not None else "negative")
        return Missing.UNKNOWN if record is None else record

    async def get(self, record_id: str) -> R | Missing:
        cached = self.cached(record_id)
        if cached is not None:
            return cached
        return await self._flights.run((record_id, True), lambda: self._load(record_id, True))

    async def reload(self, record_id: str) -> R | Missing:
        """The store's answer now, past both caches (which it then refreshes)."""
        return await self._flights.run((record_id, False), lambda: self._load(record_id, False))

    async def _load(self, record_id: str, shared: bool) -> R | Missing:
        generation = self._invalidations
        if shared and self.redis is not None:
            cached = await self.redis.get(record_id)
            if cached is not None:
                metrics.cache_hit("redis")
                self._remember(cached, generation, share=False)
                return cached
        try:
            async with self._fetch_slots:
                record = await self.store.fetch(record_id)
        except StoreUnavailable:
            metrics.store_error("postgres")
            entry = self.local.get(record_id)
            if entry is not None and entry.record is not None and self.local.is_usable_stale(entry):
                return entry.record
            return Missing.UNAVAILABLE
        metrics.cache_hit("postgres")
        if record is None:
            if generation == self._invalidations:
                self.local.put_unknown(record_id)
            return Missing.UNKNOWN
        self._remember(record, generation, share=True)
        return record

    def remember(self, record: R) -> None:
        """Keep ``record`` in-process (not shared): what this instance has learnt about it."""
        self.local.put(record)

    def _remember(self, record: R, generation: int, share: bool) -> None:
        if generation != self._invalidations:
            return
        self.local.put(record)
        if share and self.redis is not None:
            task = asyncio.get_running_loop().create_task(self.redis.put(record))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def invalidate(self, record_id: str) -> None:
        """Forget one record everywhere this instance can reach (a notification arrived)."""
        self._invalidations += 1
        self.local.drop(record_id)
        if self.redis is not None:
            await self.redis.drop(record_id)

    async def invalidate_all(self) -> None:
        """Notifications may have been missed (LISTEN reconnected): forget everything."""
        self._invalidations += 1
        self.local.clear()
        if self.redis is not None:
            self.redis.dirty = True
