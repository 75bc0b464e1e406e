"""The two caches in front of the store: in-process (no I/O) and Redis (shared by instances).

Both are invalidated by the ``hokusai_keys`` notification (see ``invalidation.py``). Redis is
optional and never trusted blindly: every call has a short time-out, a failure opens a short
circuit-breaker (so an outage costs one time-out, not one per request), and an invalidation that
could not reach Redis marks it dirty, so it is purged of every key record once it answers again.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from authz.keys.record import KeyRecord
from authz.resilience.breaker import Breaker
from authz.telemetry import metrics

log = logging.getLogger(__name__)

REDIS_PREFIX = "hokusai:key:"
Clock = Callable[[], float]


@dataclass(slots=True)
class Entry:
    record: KeyRecord | None  # None: the key id is known to be unknown
    fresh_until: float
    stale_until: float


class LocalCache:
    """A bounded TTL map of key id → record; stale entries are kept for outage use."""

    def __init__(
        self,
        ttl: float,
        negative_ttl: float,
        stale_window: float,
        size: int,
        clock: Clock = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._ttl, self._negative_ttl, self._stale = ttl, negative_ttl, stale_window
        self._size = size
        self._clock = clock

    def get(self, key_id: str) -> Entry | None:
        return self._entries.get(key_id)

    def is_fresh(self, entry: Entry) -> bool:
        return self._clock() < entry.fresh_until

    def is_usable_stale(self, entry: Entry) -> bool:
        return entry.record is not None and self._clock() < entry.stale_until

    def put(self, record: KeyRecord) -> None:
        now = self._clock()
        self._store(record.key_id, Entry(record, now + self._ttl, now + self._stale))

    def put_unknown(self, key_id: str) -> None:
        now = self._clock()
        self._store(key_id, Entry(None, now + self._negative_ttl, now))

    def _store(self, key_id: str, entry: Entry) -> None:
        self._entries[key_id] = entry
        self._entries.move_to_end(key_id)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def drop(self, key_id: str) -> None:
        self._entries.pop(key_id, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class RedisCache:
    """Key records in Redis under ``hokusai:key:<id>`` with a TTL; failures read as misses."""

    def __init__(
        self,
        client: aioredis.Redis,
        ttl: float,
        breaker: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._redis = client  # the process's one client (``authz.storage.redis``); not closed here
        self._ttl = max(1, int(ttl))
        self._breaker = Breaker(breaker, clock)
        self.dirty = False  # an invalidation was lost: purge before trusting Redis again
        self.failures = 0

    def available(self) -> bool:
        return self._breaker.closed()

    def _fail(self, exc: BaseException) -> None:
        self.failures += 1
        self._breaker.trip()
        metrics.store_error("redis")
        log.warning("redis unavailable", extra={"error": type(exc).__name__})

    async def _recover(self) -> bool:
        """Purge after a lost invalidation; False while Redis is still unusable."""
        if not self.dirty:
            return True
        try:
            await self.purge()
        except Exception as exc:
            self._fail(exc)
            return False
        self.dirty = False
        return True

    async def get(self, key_id: str) -> KeyRecord | None:
        if not self.available() or not await self._recover():
            return None
        try:
            raw = await self._redis.get(REDIS_PREFIX + key_id)
        except Exception as exc:
            self._fail(exc)
            return None
        if raw is None:
            return None
        try:
            return KeyRecord.from_json(raw if isinstance(raw, bytes) else raw.encode())
        except (ValueError, KeyError, TypeError):
            return None  # a corrupt entry is a miss, never a pass

    async def put(self, record: KeyRecord) -> None:
        if not self.available() or self.dirty:
            return
        try:
            await self._redis.set(REDIS_PREFIX + record.key_id, record.to_json(), ex=self._ttl)
        except Exception as exc:
            self._fail(exc)

    async def drop(self, key_id: str) -> None:
        try:
            await self._redis.delete(REDIS_PREFIX + key_id)
        except Exception as exc:
            self.dirty = True
            self._fail(exc)

    async def purge(self) -> None:
        """Delete every key record (after lost notifications); raises when Redis is down."""
        async for name in self._redis.scan_iter(match=REDIS_PREFIX + "*", count=1000):
            await self._redis.delete(name)
