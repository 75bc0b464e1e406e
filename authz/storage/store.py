"""The source of truth for the check path: key and session records read from Postgres (async,
one pool for both).

``KeyStore`` is the seam: ``PostgresKeyStore`` is the real one, ``MemoryKeyStore`` serves unit
tests. A store raises ``authz.errors.StoreUnavailable`` when it cannot answer; it never guesses.
``RecordSource`` is what a ``RecordLookup`` reads from: the store itself for key records,
``SessionRecords(store)`` for session records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from psycopg_pool import AsyncConnectionPool

from authz.errors import StoreUnavailable
from authz.keys.record import KeyRecord
from authz.resilience.breaker import Breaker
from authz.sessions.record import SessionRecord
from authz.storage.api_keys import RECORD_SELECT, record_from_row
from authz.storage.sessions import SESSION_SELECT, SESSION_TOUCH, session_from_row

R_co = TypeVar("R_co", covariant=True)


class RecordSource(Protocol[R_co]):
    async def fetch(self, record_id: str, /) -> R_co | None: ...


class KeyStore(Protocol):
    async def fetch(self, key_id: str) -> KeyRecord | None: ...

    async def fetch_session(self, id_hash: str) -> SessionRecord | None: ...

    async def touch(self, key_ids: Iterable[str]) -> None: ...

    async def touch_sessions(self, id_hashes: Iterable[str]) -> None: ...

    async def close(self) -> None: ...


class SessionRecords:
    """A store's session reads as a ``RecordSource`` (what the session ``RecordLookup`` reads)."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store

    async def fetch(self, id_hash: str, /) -> SessionRecord | None:
        return await self._store.fetch_session(id_hash)


_TOUCH = "UPDATE api_keys SET last_used_at = now() WHERE key_id = ANY(%s)"
T = TypeVar("T")


class PostgresKeyStore:
    """Reads key records with a short time-out; the pool is opened lazily and re-tried.

    After a failure the store answers "unavailable" at once for ``breaker`` seconds
    (``authz.resilience.breaker``), so an outage costs one time-out, not one per cold check.
    """

    def __init__(self, url: str, pool_size: int, timeout: float, breaker: float = 0.5) -> None:
        self._timeout = timeout
        self._breaker = Breaker(breaker)
        self._pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=timeout,
            open=False,
            # A checkout pings the connection (cold lookups only: warm checks never get here),
            # so a Postgres restart costs no failed check on a dead pooled connection.
            check=AsyncConnectionPool.check_connection,
            kwargs={
                "connect_timeout": max(1, int(timeout)),
                "autocommit": True,
                "options": f"-c statement_timeout={int(timeout * 1000)}",
            },
        )
        self._opened = False

    async def _ensure_open(self) -> None:
        if not self._opened:
            await self._pool.open(wait=False)
            self._opened = True

    async def fetch(self, key_id: str) -> KeyRecord | None:
        return await self._one(RECORD_SELECT, key_id, record_from_row)

    async def fetch_session(self, id_hash: str) -> SessionRecord | None:
        return await self._one(SESSION_SELECT, id_hash, session_from_row)

    async def _one(
        self, sql: str, record_id: str, build: Callable[[tuple[Any, ...]], T]
    ) -> T | None:
        if not self._breaker.closed():
            raise StoreUnavailable("circuit open")
        await self._ensure_open()
        try:
            async with self._pool.connection(timeout=self._timeout) as conn:
                cur = await conn.execute(sql, (record_id,), prepare=True)
                row = await cur.fetchone()
        except Exception as exc:  # any driver or pool failure means "cannot verify"
            self._breaker.trip()
            raise StoreUnavailable(type(exc).__name__) from None
        return None if row is None else build(row)

    async def touch(self, key_ids: Iterable[str]) -> None:
        await self._write(_TOUCH, key_ids)

    async def touch_sessions(self, id_hashes: Iterable[str]) -> None:
        await self._write(SESSION_TOUCH, id_hashes)

    async def _write(self, sql: str, ids: Iterable[str]) -> None:
        batch = list(ids)
        if not batch:
            return
        await self._ensure_open()
        try:
            async with self._pool.connection(timeout=self._timeout) as conn:
                await conn.execute(sql, (batch,))
        except Exception as exc:  # background bookkeeping: retried later, trips no breaker
            raise StoreUnavailable(type(exc).__name__) from None

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()


class MemoryKeyStore:
    """An in-memory store for unit tests; ``down`` simulates an outage."""

    def __init__(
        self, records: Iterable[KeyRecord] = (), sessions: Iterable[SessionRecord] = ()
    ) -> None:
        self.records = {r.key_id: r for r in records}
        self.sessions = {s.id_hash: s for s in sessions}
        self.down = False
        self.fetches = 0
        self.touched: list[str] = []
        self.touched_sessions: list[str] = []

    async def fetch(self, key_id: str) -> KeyRecord | None:
        return self._read(self.records, key_id)

    async def fetch_session(self, id_hash: str) -> SessionRecord | None:
        return self._read(self.sessions, id_hash)

    def _read(self, table: dict[str, T], record_id: str) -> T | None:
        self.fetches += 1
        if self.down:
            raise StoreUnavailable("down")
        return table.get(record_id)

    async def touch(self, key_ids: Iterable[str]) -> None:
        if self.down:
            raise StoreUnavailable("down")
        self.touched.extend(key_ids)

    async def touch_sessions(self, id_hashes: Iterable[str]) -> None:
        if self.down:
            raise StoreUnavailable("down")
        self.touched_sessions.extend(id_hashes)

    async def close(self) -> None:
        return None
