"""Usage rollups: per key × minute × route × method × status class, written to ``api_key_usage``.

``UsageAggregator.record`` is a dict update (the access-log stream calls it per request); a
background task drains the rollups every ``usage_flush_interval`` and upserts them in one batch
whose ``ON CONFLICT`` *adds* to existing rows, so several instances (or several flushes within one
minute) sum correctly. A failed flush keeps its rollups for the next one; ``stop`` flushes last.

Latency is kept as counts per fixed bucket (``BUCKET_BOUNDS_MS``, defined only here): p50/p95 are
read from the histogram with linear interpolation inside a bucket, so their error is at most the
width of the bucket the percentile falls in.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import tuple_row

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


def bucket_index(latency_ms: float) -> int:
    return bisect.bisect_left(BUCKET_BOUNDS_MS, latency_ms)


def status_class(status: int) -> int:
    """1–5; no response at all (0: reset, timed out before a status) counts as a server error."""
    return status // 100 if 100 <= status < 600 else 5


def is_error(status: int) -> bool:
    return not 100 <= status < 400


@dataclass(frozen=True, slots=True)
class UsageEvent:
    key_id: str
    at: float  # epoch seconds the request started
    route: str  # a normalised path without query (see accesslog.py)
    method: str
    status: int
    latency_ms: float


class RollupKey(NamedTuple):
    key_id: str
    minute: int  # epoch seconds, a multiple of 60
    route: str
    method: str
    status_class: int


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


# Adds to an existing row: counts and sums add, maxima take the larger, buckets add element-wise.
UPSERT = """
INSERT INTO api_key_usage AS u (key_id, minute, route, method, status_class, count, errors,
                                latency_sum_ms, latency_max_ms, latency_buckets)
VALUES (%s, to_timestamp(%s), %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (key_id, minute, route, method, status_class) DO UPDATE SET
    count = u.count + EXCLUDED.count,
    errors = u.errors + EXCLUDED.errors,
    latency_sum_ms = u.latency_sum_ms + EXCLUDED.latency_sum_ms,
    latency_max_ms = greatest(u.latency_max_ms, EXCLUDED.latency_max_ms),
    latency_buckets = ARRAY(
        SELECT coalesce(a, 0) + coalesce(b, 0)
          FROM unnest(u.latency_buckets, EXCLUDED.latency_buckets) WITH ORDINALITY AS t(a, b, i)
         ORDER BY i)
"""


def upsert_rows(rollups: dict[RollupKey, Rollup]) -> list[tuple[Any, ...]]:
    return [
        (*key, r.count, r.errors, r.latency_sum_ms, r.latency_max_ms, r.buckets)
        for key, r in rollups.items()
    ]


class UsageAggregator:
    """Rollups in memory, drained by ``flush`` (the only place that does I/O)."""

    def __init__(self, database_url: str, timeout: float = 5.0) -> None:
        self._url = database_url
        self._timeout = timeout
        self._rollups: dict[RollupKey, Rollup] = {}
        self._lock = asyncio.Lock()
        self.recorded = 0
        self.dropped = 0
        self.flushed_rows = 0

    def record(self, event: UsageEvent) -> None:
        minute = int(event.at // 60 * 60)
        key = RollupKey(
            event.key_id, minute, event.route, event.method.upper(), status_class(event.status)
        )
        rollup = self._rollups.get(key)
        if rollup is None:
            if len(self._rollups) >= MAX_PENDING_ROWS:
                self.dropped += 1
                return
            rollup = self._rollups[key] = Rollup()
        rollup.add(event.status, event.latency_ms)
        self.recorded += 1

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

    async def _write(self, batch: dict[RollupKey, Rollup]) -> None:
        connect = psycopg.AsyncConnection.connect(
            self._url, connect_timeout=max(1, int(self._timeout))
        )
        async with await connect as conn, conn.cursor() as cur:
            await cur.executemany(UPSERT, upsert_rows(batch))

    def _restore(self, batch: dict[RollupKey, Rollup]) -> None:
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


# --- reading and pruning (the CLI) ----------------------------------------------------------


def prune(conn: psycopg.Connection[Any], older_than: timedelta) -> int:
    """Delete rollups of minutes older than ``older_than``; returns the rows deleted."""
    cur = conn.execute("DELETE FROM api_key_usage WHERE minute < now() - %s", (older_than,))
    return cur.rowcount


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group of a report (an endpoint, a status class, an interval or a key)."""

    label: str
    count: int
    errors: int
    latency_sum_ms: float
    latency_max_ms: float
    buckets: list[int]

    @property
    def p50(self) -> float | None:
        return percentile(self.buckets, 0.50, self.latency_max_ms)

    @property
    def p95(self) -> float | None:
        return percentile(self.buckets, 0.95, self.latency_max_ms)

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "requests": self.count,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "latency_avg_ms": _round(self.latency_sum_ms / self.count if self.count else None),
            "latency_max_ms": round(self.latency_max_ms, 3),
            "p50_ms": _round(self.p50),
            "p95_ms": _round(self.p95),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# Groups are summed in Python: the bucket arrays add element-wise, which SQL's sum() cannot.
_GROUPED = """
SELECT {label} AS label, count, errors, latency_sum_ms, latency_max_ms, latency_buckets
  FROM api_key_usage
 WHERE minute >= %s AND ({all_keys} OR key_id = %s)
"""
GROUP_LABELS = {
    "endpoint": "method || ' ' || route",
    "status": "status_class::text || 'xx'",
    "key": "key_id",
    "total": "''",
}


def report(
    conn: psycopg.Connection[Any] | psycopg.Cursor[Any],
    key_id: str | None,
    since: datetime,
    by: str,
    interval: timedelta | None = None,
) -> list[UsageRow]:
    """Rows grouped by ``by`` (a GROUP_LABELS name, or "interval" with ``interval``)."""
    if by == "interval":
        assert interval is not None
        seconds = max(60, int(interval.total_seconds()))
        label = f"(floor(extract(epoch FROM minute) / {seconds}) * {seconds})::bigint::text"
    else:
        label = GROUP_LABELS[by]
    query = _GROUPED.format(label=label, all_keys="true" if key_id is None else "false")
    groups: dict[str, list[Any]] = {}
    for row in conn.execute(query, (since, key_id or "")):
        _add_group(groups, row)
    rows = [UsageRow(k, *v) for k, v in groups.items()]
    return sorted(rows, key=lambda r: -r.count) if by != "interval" else rows


def _add_group(groups: dict[str, list[Any]], row: tuple[Any, ...]) -> None:
    label, count, errors, total, peak, buckets = row
    padded = list(buckets) + [0] * (BUCKETS - len(buckets))
    group = groups.get(label)
    if group is None:
        groups[label] = [int(count), int(errors), float(total), float(peak), padded]
        return
    group[0] += int(count)
    group[1] += int(errors)
    group[2] += float(total)
    group[3] = max(group[3], float(peak))
    group[4] = [a + b for a, b in zip(group[4], padded, strict=True)]


# --- one key's report: the figures of `hokusai auth usage` and of GET …/keys/{id}/usage -------

CHART_STEPS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
CHART_COLUMNS = 48


def chart_step(span: timedelta) -> int:
    """The smallest interval that fits ``span`` into ``CHART_COLUMNS`` columns (seconds)."""
    seconds = span.total_seconds()
    return next((s for s in CHART_STEPS if seconds / s <= CHART_COLUMNS), CHART_STEPS[-1])


@dataclass(frozen=True, slots=True)
class KeyReport:
    key_id: str
    since: datetime
    interval_seconds: int
    total: UsageRow | None
    endpoints: list[UsageRow]
    status_classes: list[UsageRow]
    series: list[tuple[int, int]]  # (interval start, epoch seconds; requests), gaps as 0

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "since": self.since.isoformat(),
            "interval_seconds": self.interval_seconds,
            "total": self.total.to_json() if self.total else None,
            "endpoints": [r.to_json() for r in self.endpoints],
            "status_classes": [r.to_json() for r in self.status_classes],
            "series": [
                {"start": datetime.fromtimestamp(t).astimezone().isoformat(), "requests": n}
                for t, n in self.series
            ],
        }


def key_report(
    conn: psycopg.Connection[Any], key_id: str, since: datetime, now: datetime
) -> KeyReport:
    """Totals, endpoints, status classes and a per-interval series for one key."""
    step = chart_step(now - since)
    cursor = conn.cursor(row_factory=tuple_row)  # whatever the connection's row factory is
    grouped = {by: report(cursor, key_id, since, by) for by in ("total", "endpoint", "status")}
    counts = {
        int(r.label): r.count
        for r in report(cursor, key_id, since, "interval", timedelta(seconds=step))
    }
    start = int(since.timestamp()) // step * step
    series = [(t, counts.get(t, 0)) for t in range(start, int(now.timestamp()) + 1, step)]
    return KeyReport(
        key_id,
        since,
        step,
        next(iter(grouped["total"]), None),
        grouped["endpoint"],
        grouped["status"],
        series,
    )
