"""Usage rollups: per key × minute × route × method × status class, written to ``api_key_usage``.

``UsageAggregator.record`` is a dict update (the access-log stream calls it per request); a
background task drains the rollups every ``usage_flush_interval`` and upserts them in one batch
(``authz.storage.usage.upsert``, which *adds* to existing rows, so several instances or flushes
within one minute sum correctly). A failed flush keeps its rollups for the next one; ``stop``
flushes last. No SQL here.

Latency is kept as counts per fixed bucket (``BUCKET_BOUNDS_MS``, defined only here): p50/p95 are
read from the histogram with linear interpolation inside a bucket, so their error is at most the
width of the bucket the percentile falls in.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from authz.storage import usage as usage_sql

log = logging.getLogger(__name__)

# Upper bounds (ms) of the latency buckets; one more bucket catches everything slower.
BUCKET_BOUNDS_MS: tuple[float, ...] = (
    1,
    2,
    3,
    5,
    7.5,
    10,
    15,
    20,
    30,
    50,
    75,
    100,
    150,
    200,
    300,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    5000,
    10000,
    30000,
)
BUCKETS = len(BUCKET_BOUNDS_MS) + 1
MAX_PENDING_ROWS = 200_000  # beyond this (database away for long), new rollups are dropped
MAX_SEGMENTS = 8
MAX_ROUTE_LENGTH = 200
_ID_SEGMENT = re.compile(r"\d+|[0-9a-fA-F-]{16,}|[0-9A-Za-z]{24,}")


def normalise_path(path: str) -> str:
    """The route of a request as usage and authentication events keep it: the path without query
    or fragment (``api_key`` may be in the query); id-like segments → ``:id``; bounded in depth
    and length, so routes stay a small set."""
    bare = path.split("?", 1)[0].split("#", 1)[0] or "/"
    segments = [":id" if _ID_SEGMENT.fullmatch(s) else s for s in bare.split("/")[1:]]
    if len(segments) > MAX_SEGMENTS:
        segments = [*segments[:MAX_SEGMENTS], "…"]
    return ("/" + "/".join(segments))[:MAX_ROUTE_LENGTH]


def bucket_index(latency_ms: float) -> int:
    return bisect.bisect_left(BUCKET_BOUNDS_MS, latency_ms)


def status_class(status: int) -> int:
    """1–5; no response at all (0: reset, timed out before a status) counts as a server error."""
    return status // 100 if 100 <= status < 600 else 5


def is_error(status: int) -> bool:
    return not 100 <= status < 400


class UsageEvent(NamedTuple):  # one per access-log entry: a tuple is a third of a dataclass
    key_id: str
    at: float  # epoch seconds the request started
    route: str  # a normalised path without query (see accesslog.py)
    method: str
    status: int
    latency_ms: float


class RollupKey(NamedTuple):  # equal to, and hashed as, the plain RowKey tuple of its fields
    key_id: str
    minute: int  # epoch seconds, a multiple of 60
    route: str
    method: str
    status_class: int


RowKey = tuple[str, int, str, str, int]  # a RollupKey's fields: it finds the RollupKey's rollup


@dataclass(slots=True)
class Rollup:
    count: int = 0
    errors: int = 0
    latency_sum_ms: float = 0.0
    latency_max_ms: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def add(self, status: int, latency_ms: float) -> None:
        self.count += 1
        self.errors += is_error(status)
        self.latency_sum_ms += latency_ms
        self.latency_max_ms = max(self.latency_max_ms, latency_ms)
        self.buckets[bucket_index(latency_ms)] += 1

    def merge(self, other: Rollup) -> None:
        self.count += other.count
        self.errors += other.errors
        self.latency_sum_ms += other.latency_sum_ms
        self.latency_max_ms = max(self.latency_max_ms, other.latency_max_ms)
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]


def percentile(buckets: list[int], q: float, max_ms: float | None = None) -> float | None:
    """The q-quantile (0–1) from bucket counts, interpolated inside its bucket; capped at max."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            low = BUCKET_BOUNDS_MS[index - 1] if index > 0 else 0.0
            high = BUCKET_BOUNDS_MS[index] if index < len(BUCKET_BOUNDS_MS) else (max_ms or low)
            value = low + (high - low) * (rank - seen) / count
            return min(value, max_ms) if max_ms is not None else value
        seen += count
    return max_ms


def upsert_rows(rollups: dict[RowKey, Rollup]) -> list[tuple[Any, ...]]:
    return [
        (*key, r.count, r.errors, r.latency_sum_ms, r.latency_max_ms, r.buckets)
        for key, r in rollups.items()
    ]


class UsageAggregator:
    """Rollups in memory, drained by ``flush`` (the only place that does I/O)."""

    def __init__(self, database_url: str, timeout: float = 5.0) -> None:
        self._url = database_url
        self._timeout = timeout
        self._rollups: dict[RowKey, Rollup] = {}  # keyed by RollupKey
        self._lock = asyncio.Lock()
        self.recorded = 0
        self.dropped = 0
        self.flushed_rows = 0

    def record(self, event: UsageEvent) -> None:
        minute = int(event.at // 60 * 60)
        key = (event.key_id, minute, event.route, event.method.upper(), status_class(event.status))
        rollup = self._rollups.get(key) or self.open(key)
        if rollup is not None:
            rollup.add(event.status, event.latency_ms)
            self.recorded += 1

    @property
    def rollups(self) -> dict[RowKey, Rollup]:
        """The live rollups, for a caller that adds many at once (the access log): look a row up
        with a plain tuple, and call ``open`` when it is not there. Valid until the next ``await``
        (a flush swaps the dict); count what was added in ``recorded``."""
        return self._rollups

    def open(self, key: RowKey) -> Rollup | None:
        """A new, empty rollup for ``key`` (not yet there); None, counted as dropped, when full."""
        if len(self._rollups) >= MAX_PENDING_ROWS:
            self.dropped += 1
            return None
        rollup = self._rollups[RollupKey(*key)] = Rollup()
        return rollup

    @property
    def pending(self) -> int:
        return len(self._rollups)

    async def flush(self) -> int:
        """Write every rollup in one transaction; on failure keep them for the next flush."""
        async with self._lock:
            if not self._rollups or not self._url:
                return 0
            batch, self._rollups = self._rollups, {}
            try:
                await self._write(batch)
            except Exception as exc:
                self._restore(batch)
                log.warning("usage flush failed", extra={"error": type(exc).__name__})
                return 0
            self.flushed_rows += len(batch)
            return len(batch)

    async def _write(self, batch: dict[RowKey, Rollup]) -> None:
        await usage_sql.upsert(self._url, upsert_rows(batch), self._timeout)

    def _restore(self, batch: dict[RowKey, Rollup]) -> None:
        for key, rollup in batch.items():
            current = self._rollups.get(key)
            if current is None:
                self._rollups[key] = rollup
            else:
                current.merge(rollup)

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush()
