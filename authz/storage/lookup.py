"""Phase 3 of the check: find a key's record through the tiers — in-process, Redis, Postgres.

* A fresh in-process entry answers with no I/O (also "unknown", for ``negative_cache_ttl``).
* Concurrent misses for one key id share one store query (single flight).
* When Postgres cannot answer, a record fetched within ``stale_window`` still serves; otherwise
  the answer is ``UNAVAILABLE`` and the check fails closed.
* A fetch that overlapped an invalidation is used for its own request but not cached, so a
  revocation racing a cache fill cannot be undone by it.
"""

from __future__ import annotations

import asyncio
import enum

from authz.errors import StoreUnavailable
from authz.keys.record import KeyRecord
from authz.resilience.singleflight import SingleFlight
from authz.storage.cache import LocalCache, RedisCache
from authz.storage.store import KeyStore
from authz.telemetry import metrics


class Missing(enum.Enum):
    UNKNOWN = "unknown"
    UNAVAILABLE = "unavailable"


class RecordLookup:
    def __init__(
        self,
        local: LocalCache,
        redis: RedisCache | None,
        store: KeyStore,
        max_concurrent_fetches: int = 8,
    ) -> None:
        self.local, self.redis, self.store = local, redis, store
        self._flights: SingleFlight[str, KeyRecord | Missing] = SingleFlight()
        self._fetch_slots = asyncio.Semaphore(max_concurrent_fetches)
        self._invalidations = 0
        self._background: set[asyncio.Task[None]] = set()

    def cached(self, key_id: str) -> KeyRecord | Missing | None:
        """The fresh in-process answer, or None when only I/O can tell."""
        entry = self.local.get(key_id)
        if entry is not None and self.local.is_fresh(entry):
            metrics.cache_hit("local" if entry.record is not None else "negative")
            return Missing.UNKNOWN if entry.record is None else entry.record
        return None

    async def get(self, key_id: str) -> KeyRecord | Missing:
        cached = self.cached(key_id)
        if cached is not None:
            return cached
        return await self._flights.run(key_id, lambda: self._load(key_id))

    async def _load(self, key_id: str) -> KeyRecord | Missing:
        generation = self._invalidations
        if self.redis is not None:
            cached = await self.redis.get(key_id)
            if cached is not None:
                metrics.cache_hit("redis")
                self._remember(cached, generation, share=False)
                return cached
        try:
            async with self._fetch_slots:
                record = await self.store.fetch(key_id)
        except StoreUnavailable:
            metrics.store_error("postgres")
            entry = self.local.get(key_id)
            if entry is not None and entry.record is not None and self.local.is_usable_stale(entry):
                return entry.record
            return Missing.UNAVAILABLE
        metrics.cache_hit("postgres")
        if record is None:
            if generation == self._invalidations:
                self.local.put_unknown(key_id)
            return Missing.UNKNOWN
        self._remember(record, generation, share=True)
        return record

    def _remember(self, record: KeyRecord, generation: int, share: bool) -> None:
        if generation != self._invalidations:
            return
        self.local.put(record)
        if share and self.redis is not None:
            task = asyncio.get_running_loop().create_task(self.redis.put(record))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def invalidate(self, key_id: str) -> None:
        """Forget one key everywhere this instance can reach (a notification arrived)."""
        self._invalidations += 1
        self.local.drop(key_id)
        if self.redis is not None:
            await self.redis.drop(key_id)

    async def invalidate_all(self) -> None:
        """Notifications may have been missed (LISTEN reconnected): forget everything."""
        self._invalidations += 1
        self.local.clear()
        if self.redis is not None:
            self.redis.dirty = True
