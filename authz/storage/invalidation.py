"""Cache invalidation: ``LISTEN`` on the change channels; each notification names one record.

The triggers in the migrations notify ``hokusai_keys`` (payload: a key id) on every change to a
key or its user, and ``hokusai_sessions`` (payload: the hex hash of a session id) on every change
to a session. A lost connection may have lost notifications, so on every (re)connect the caches
are flushed before listening again, and a heartbeat query detects a connection that died silently
(no TCP reset). The revocation bound is therefore: notification latency while connected;
heartbeat interval + reconnect when not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import psycopg

log = logging.getLogger(__name__)
CHANNEL = "hokusai_keys"
SESSIONS_CHANNEL = "hokusai_sessions"
Handler = Callable[[str], Awaitable[None]]


class InvalidationListener:
    def __init__(
        self,
        url: str,
        channels: Mapping[str, Handler],
        on_reset: Callable[[], Awaitable[None]],
        heartbeat: float = 5.0,
        retry: float = 0.5,
    ) -> None:
        self._url = url
        self._channels, self._on_reset = dict(channels), on_reset
        self._heartbeat, self._retry = heartbeat, retry
        self.connected = asyncio.Event()
        self.resets = 0

    async def run(self) -> None:
        """Listen forever, reconnecting with a short back-off; cancel to stop."""
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "invalidation listener lost its connection", extra={"error": type(exc).__name__}
                )
            self.connected.clear()
            await asyncio.sleep(self._retry)

    async def _listen_once(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=3
        ) as conn:
            for channel in self._channels:
                await conn.execute(f"LISTEN {channel}")
            self.resets += 1
            await self._on_reset()  # anything changed while we were not listening is forgotten
            self.connected.set()
            while True:
                async for note in conn.notifies(timeout=self._heartbeat):
                    handler = self._channels.get(note.channel)
                    if handler is not None:
                        await handler(note.payload)
                await asyncio.wait_for(conn.execute("SELECT 1"), timeout=self._heartbeat)
