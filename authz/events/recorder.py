"""Authentication events off the hot path: a bounded in-memory queue, written in batches.

Every refused check whose credential parsed to a key id (``Decision.key_id``), on either
transport and in the keys API, and every sign-in of issue 13 become one ``auth_events`` row: time,
kind, key id, user, reason, client address, route, method, instance.

* The check only counts the event in a dict (``denied``): identical events of one second — same
  key, user, reason, client, path and method — are one entry with a count, so a flood of
  refusals holds a few entries, not one object per request (a list of one tuple per event cost
  the check about 12 % of its throughput in ``bench.events``: 0.89 of no events; the count is
  within the 5 % of issue 15). No I/O, no task, no lock. When ``queue_size`` distinct events are
  pending, a new distinct one is dropped and counted (``dropped``, and the
  ``hokusai_auth_events`` metric); identical ones still count — the check is never blocked or
  slowed. ``queue_size`` 0 turns recording off.
* ``run`` flushes every ``flush_interval`` (one ``COPY``, one transaction,
  ``authz/storage/events.py``); each entry is one row with its ``count`` (entries whose route or
  address normalise alike merge). A failed flush keeps its entries for the next one, as many as
  fit the bound. The route is normalised at flush (no query string: ``api_key`` may be in it;
  id-like segments become ``:id``; memoised per raw path). ``stop`` flushes last, after the
  transports have stopped.
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
from collections import Counter
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
# (second, kind, key id, user id, reason, client address, path as sent, method)
Event = tuple[int, str, str | None, int | None, str, str, str, str]
MEMO_SIZE = 10_000  # normalised routes and client addresses kept; cleared whole when full


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
        self._pending: dict[Event, int] = {}  # event → how many times, this flush interval
        self._lock = asyncio.Lock()
        self._routes: dict[str, str] = {}
        self._addresses: dict[str, str | None] = {}
        self.dropped = self.written = 0

    # --- the hot path -----------------------------------------------------------------------

    def denied(self, decision: Decision, request: CheckInput) -> None:
        """A refused check (``Checker``'s ``on_denied``): one count, or one dropped event.
        The reason is kept as its value, a plain ``str`` (an enum member hashes in Python)."""
        record = decision.record
        event = (
            int(self._clock()),
            "denied",
            decision.key_id,
            None if record is None else record.user_id,
            decision.reason._value_,
            request.client_address,
            request.path,
            request.method,
        )
        pending = self._pending
        seen = pending.get(event)
        if seen is not None:
            pending[event] = seen + 1
        elif len(pending) < self.queue_size:
            pending[event] = 1
        else:
            self._drop()

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
        event = (int(self._clock()), kind, key_id, user_id, reason, client_address, route, method)
        seen = self._pending.get(event)
        if seen is not None:
            self._pending[event] = seen + 1
        elif len(self._pending) < self.queue_size:
            self._pending[event] = 1
        else:
            self._drop()

    def _drop(self) -> None:
        if self.queue_size:
            self.dropped += 1
            metrics.auth_events(dropped=1)

    @property
    def pending(self) -> int:
        """Events waiting for the next flush."""
        return sum(self._pending.values())

    # --- the background -----------------------------------------------------------------------

    async def flush(self) -> int:
        """Write what is pending in one transaction; on failure keep it (bounded) for the next."""
        async with self._lock:
            if not self._pending or not self._url:
                return 0
            batch, self._pending = self._pending, {}
            events = sum(batch.values())
            try:
                await events_sql.insert(self._url, self._rows(batch), self.instance, self._timeout)
            except Exception as exc:
                lost = self._keep(batch)
                if lost:
                    self.dropped += lost
                    metrics.auth_events(dropped=lost)
                log.warning("auth events flush failed", extra={"error": type(exc).__name__})
                return 0
            self.written += events
            metrics.auth_events(written=events)
            return events

    def _keep(self, batch: dict[Event, int]) -> int:
        """Put a batch that was not written back, within the bound; how many events were lost."""
        pending, lost = self._pending, 0
        for event, n in batch.items():
            if event in pending:
                pending[event] += n
            elif len(pending) < self.queue_size:
                pending[event] = n
            else:
                lost += n
        return lost

    def _rows(self, batch: dict[Event, int]) -> list[tuple[Any, ...]]:
        """One row per distinct event of a second (``COLUMNS`` order), with its count."""
        merged: Counter[tuple[Any, ...]] = Counter()
        for (at, kind, key_id, user_id, reason, client, path, method), n in batch.items():
            merged[
                (
                    at,
                    kind,
                    key_id,
                    user_id,
                    str(reason),
                    self._address(client),
                    self._route(path),
                    method.upper()[:16],
                )
            ] += n
        return [(*event, n) for event, n in merged.items()]

    def _route(self, path: str) -> str:
        route = self._routes.get(path)
        if route is None:
            route = normalise_path(path) if path else ""
            if len(self._routes) >= MEMO_SIZE:
                self._routes.clear()
            self._routes[path] = route
        return route

    def _address(self, text: str) -> str | None:
        if text in self._addresses:
            return self._addresses[text]
        address = _address(text)
        if len(self._addresses) >= MEMO_SIZE:
            self._addresses.clear()
        self._addresses[text] = address
        return address

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
        """Flush every interval, prune every ``prune_every``; cancel to stop. A flush under way
        when the task is cancelled completes (shielded): its batch is written, not lost, and the
        owner's last ``flush`` waits for it, then writes the rest."""
        next_prune = time.monotonic()
        while True:
            await asyncio.sleep(self._interval)
            await asyncio.shield(self.flush())
            if self._url and time.monotonic() >= next_prune:
                next_prune = time.monotonic() + prune_every
                await self.prune()


def _address(text: str) -> str | None:
    """An address Postgres's ``inet`` accepts, or None (an unreadable one must not fail a batch)."""
    try:
        return str(ipaddress.ip_address(text)) if text else None
    except ValueError:
        return None
