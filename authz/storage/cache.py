"""The two caches in front of the store: in-process (no I/O) and Redis (shared by instances).

Generic over the record type: key records (``hokusai:key:<key id>``) and session records
(``hokusai:session:<id hash>``) use the same two classes, each record naming its own cache id
(``CachedRecord``) and each Redis cache its prefix and decoder (``Codec``). Both are invalidated
by notifications (``hokusai_keys``, ``hokusai_sessions``; see ``invalidation.py``). Redis is
optional and never trusted blindly: every call has a short time-out, a failure opens a short
circuit-breaker (so an outage costs one time-out, not one per request), and an invalidation that
could not reach Redis marks it dirty, so it is purged of every record of its kind once it answers
again.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, NamedTuple, Protocol, TypeVar

import redis.asyncio as aioredis

from authz.keys.record import KeyRecord
from authz.resilience.breaker import Breaker
from authz.sessions.record import SessionRecord
from authz.telemetry import metrics

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class CachedRecord(Protocol):
    @property
    def cache_id(self) -> str: ...

    def to_json(self) -> bytes: ...


R = TypeVar("R", bound=CachedRecord)


class Codec(NamedTuple, Generic[R]):
    """How one kind of record is kept in Redis: its key prefix and its decoder."""

    prefix: str
    decode: Callable[[bytes], R]


KEY_CODEC: Codec[KeyRecord] = Codec("hokusai:key:", KeyRecord.from_json)
SESSION_CODEC: Codec[SessionRecord] = Codec("hokusai:session:", SessionRecord.from_json)


@dataclass(slots=True)
class Entry(Generic[R]):
    record: R | None  # None: the id is known to be unknown
    fresh_until: float
    stale_until: float


class LocalCache(Generic[R]):
    """A bounded TTL map of id → record; stale entries are kept for outage use."""

    def __init__(
        self,
        ttl: float,
        negative_ttl: float,
        stale_window: float,
        size: int,
        clock: Clock = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[str, Entry[R]] = OrderedDict()
        self._ttl, self._negative_ttl, self._stale = ttl, negative_ttl, stale_window
        self._size = size
        self._clock = clock

    def get(self, key_id: str) -> Entry[R] | None:
        return self._entries.get(key_id)

    def fresh(self, key_id: str) -> Entry[R] | None:
        """The entry when it is fresh (``get`` and ``is_fresh`` in one call: the warm check's)."""
        entry = self._entries.get(key_id)
        return entry if entry is not None and self._clock() < entry.fresh_until else None

    def is_fresh(self, entry: Entry[R]) -> bool:
        return self._clock() < entry.fresh_until

    def is_usable_stale(self, entry: Entry[R]) -> bool:
        return entry.record is not None and self._clock() < entry.stale_until

    def put(self, record: R) -> None:
        now = self._clock()
        self._store(record.cache_id, Entry(record, now + self._ttl, now + self._stale))

    def put_unknown(self, key_id: str) -> None:
        now = self._clock()
        self._store(key_id, Entry(None, now + self._negative_ttl, now))

    def _store(self, key_id: str, entry: Entry[R]) -> None:
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


class RedisCache(Generic[R]):
    """Records in Redis under ``<prefix><id>`` with a TTL; failures read as misses."""

    def __init__(
        self,
        client: aioredis.Redis,
        ttl: float,
        codec: Codec[R],
        breaker: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._redis = client  # the process's one client (``authz.storage.redis``); not closed here
        self._prefix, self._decode = codec
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

    async def get(self, key_id: str) -> R | None:
        if not self.available() or not await self._recover():
            return None
        try:
            raw = await self._redis.get(self._prefix + key_id)
        except Exception as exc:
            self._fail(exc)
            return None
        if raw is None:
            return None
        try:
            return self._decode(raw if isinstance(raw, bytes) else raw.encode())
        except (ValueError, KeyError, TypeError):
            return None  # a corrupt entry is a miss, never a pass

    async def put(self, record: R) -> None:
        if not self.available() or self.dirty:
            return
        try:
            await self._redis.set(self._prefix + record.cache_id, record.to_json(), ex=self._ttl)
        except Exception as exc:
            self._fail(exc)

    async def drop(self, key_id: str) -> None:
        try:
            await self._redis.delete(self._prefix + key_id)
        except Exception as exc:
            self.dirty = True
            self._fail(exc)

    async def purge(self) -> None:
        """Delete every record of this kind (after lost notifications); raises if Redis is down."""
        async for name in self._redis.scan_iter(match=self._prefix + "*", count=1000):
            await self._redis.delete(name)
