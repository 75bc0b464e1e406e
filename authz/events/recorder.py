"""Authentication events off the hot path: a bounded in-memory queue, written in batches.

Every refused check whose credential parsed to a key id (``Decision.key_id``), on either
transport and in the keys API, and every sign-in of issue 13 become one ``auth_events`` row: time,
kind, key id, user, reason, client address, route, method, instance.

* The check only appends a tuple to a list (``denied``): no I/O, no task, no lock. When the list
  holds ``queue_size`` events, new ones are dropped and counted (``dropped``, and the
  ``hokusai_auth_events`` metric) — the check is never blocked or slowed. ``queue_size`` 0 turns
  recording off.
* ``run`` flushes every ``flush_interval`` (one ``COPY``, one transaction,
  ``authz/storage/events.py``); a failed flush keeps its batch for the next one, as much of it as
  fits the bound. The route is normalised at flush (no query string: ``api_key`` may be in it;
  id-like segments become ``:id``). ``stop`` flushes last, after the transports have stopped.
* Once an hour ``run`` prunes events older than ``retention``, under an advisory lock so that one
  instance of many does it.

No key secret reaches a row: the key id is the public part, the path loses its query.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from authz.check.checker import CheckInput, Decision
from authz.storage import events as events_sql
from authz.telemetry import metrics
from authz.usage.rollups import normalise_path

log = logging.getLogger(__name__)

KINDS = ("denied", "signin", "signin_refused", "signout")
PRUNE_EVERY = 3600.0
# (at, kind, key id, user id, reason, client address, path as sent, method)
Event = tuple[float, str, str | None, int | None, str, str, str, str]


def default_instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class EventRecorder:
    def __init__(
        self,
        database_url: str,
        queue_size: int,
        flush_interval: float,
        retention: float,
        *,
        instance: str = "",
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = database_url
        self.queue_size = queue_size
        self._interval, self._retention, self._timeout = flush_interval, retention, timeout
        self.instance = instance or default_instance()
        self._clock = clock
        self._queue: list[Event] = []
        self._lock = asyncio.Lock()
        self.recorded = self.dropped = self.written = 0

    # --- the hot path -----------------------------------------------------------------------

    def denied(self, decision: Decision, request: CheckInput) -> None:
        """A refused check (``Checker``'s ``on_denied``): one append, or one dropped event."""
        queue = self._queue
        if len(queue) >= self.queue_size:
            self._drop()
            return
        queue.append(
            (
                self._clock(),
                "denied",
                decision.key_id,
                decision.user_id,
                decision.reason.value,
                request.client_address,
                request.path,
                request.method,
            )
        )

    def signin(
        self,
        kind: str,
        *,
        reason: str,
        key_id: str | None = None,
        user_id: int | None = None,
        client_address: str = "",
        route: str = "",
        method: str = "",
    ) -> None:
        """A sign-in, refused sign-in or sign-out (the keys-API process's pages, issue 13)."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        if len(self._queue) >= self.queue_size:
            self._drop()
            return
        self._queue.append(
            (self._clock(), kind, key_id, user_id, reason, client_address, route, method)
        )

    def _drop(self) -> None:
        if self.queue_size:
            self.dropped += 1
            metrics.auth_events(dropped=1)

    @property
    def pending(self) -> int:
        return len(self._queue)

    # --- the background -----------------------------------------------------------------------

    async def flush(self) -> int:
        """Write what is queued in one transaction; on failure keep it (bounded) for the next."""
        async with self._lock:
            if not self._queue or not self._url:
                return 0
            batch, self._queue = self._queue, []
            try:
                await events_sql.insert(
                    self._url, [_row(e) for e in batch], self.instance, self._timeout
                )
            except Exception as exc:
                room = max(0, self.queue_size - len(self._queue))
                kept = batch[-room:] if room else []
                lost = len(batch) - len(kept)
                self._queue = kept + self._queue
                if lost:
                    self.dropped += lost
                    metrics.auth_events(dropped=lost)
                log.warning("auth events flush failed", extra={"error": type(exc).__name__})
                return 0
            self.written += len(batch)
            metrics.auth_events(written=len(batch))
            return len(batch)

    async def prune(self) -> int | None:
        """Delete events past the retention (None: another instance holds the lock)."""
        try:
            return await events_sql.prune_once(
                self._url, timedelta(seconds=self._retention), self._timeout
            )
        except Exception as exc:
            log.warning("auth events pruning failed", extra={"error": type(exc).__name__})
            return None

    async def run(self, prune_every: float = PRUNE_EVERY) -> None:
        next_prune = time.monotonic()
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()
            if self._url and time.monotonic() >= next_prune:
                next_prune = time.monotonic() + prune_every
                await self.prune()


def _row(event: Event) -> tuple[Any, ...]:
    at, kind, key_id, user_id, reason, client, path, method = event
    route = normalise_path(path) if path else ""
    return (at, kind, key_id, user_id, reason, _address(client), route, method.upper()[:16])


def _address(text: str) -> str | None:
    """An address Postgres's ``inet`` accepts, or None (an unreadable one must not fail a batch)."""
    try:
        return str(ipaddress.ip_address(text)) if text else None
    except ValueError:
        return None
