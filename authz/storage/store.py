"""The source of truth for the check path: key records read from Postgres (async, pooled).

``KeyStore`` is the seam: ``PostgresKeyStore`` is the real one, ``MemoryKeyStore`` serves unit
tests. A store raises ``authz.errors.StoreUnavailable`` when it cannot answer; it never guesses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from psycopg_pool import AsyncConnectionPool

from authz.errors import StoreUnavailable
from authz.keys.record import KeyRecord
from authz.resilience.breaker import Breaker
from authz.storage.api_keys import RECORD_SELECT, record_from_row


class KeyStore(Protocol):
    async def fetch(self, key_id: str) -> KeyRecord | None: ...

    async def touch(self, key_ids: Iterable[str]) -> None: ...

    async def close(self) -> None: ...


_TOUCH = "UPDATE api_keys SET last_used_at = now() WHERE key_id = ANY(%s)"


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
        if not self._breaker.closed():
            raise StoreUnavailable("circuit open")
        await self._ensure_open()
        try:
            async with self._pool.connection(timeout=self._timeout) as conn:
                cur = await conn.execute(RECORD_SELECT, (key_id,), prepare=True)
                row = await cur.fetchone()
        except Exception as exc:  # any driver or pool failure means "cannot verify"
            self._breaker.trip()
            raise StoreUnavailable(type(exc).__name__) from None
        return None if row is None else record_from_row(row)

    async def touch(self, key_ids: Iterable[str]) -> None:
        ids = list(key_ids)
        if not ids:
            return
        await self._ensure_open()
        try:
            async with self._pool.connection(timeout=self._timeout) as conn:
                await conn.execute(_TOUCH, (ids,))
        except Exception as exc:  # background bookkeeping: retried later, trips no breaker
            raise StoreUnavailable(type(exc).__name__) from None

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()


class MemoryKeyStore:
    """An in-memory store for unit tests; ``down`` simulates an outage."""

    def __init__(self, records: Iterable[KeyRecord] = ()) -> None:
        self.records = {r.key_id: r for r in records}
        self.down = False
        self.fetches = 0
        self.touched: list[str] = []

    async def fetch(self, key_id: str) -> KeyRecord | None:
        self.fetches += 1
        if self.down:
            raise StoreUnavailable("down")
        return self.records.get(key_id)

    async def touch(self, key_ids: Iterable[str]) -> None:
        if self.down:
            raise StoreUnavailable("down")
        self.touched.extend(key_ids)

    async def close(self) -> None:
        return None
