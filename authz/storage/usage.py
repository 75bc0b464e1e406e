"""The usage SQL: rollups upserted into ``api_key_usage``, read back grouped, and pruned.

``upsert`` is the aggregator's one write (``authz.usage.rollups``): its ``ON CONFLICT`` *adds* to
an existing row, so several instances (or several flushes within one minute) sum correctly.
``grouped`` reads rows for a report (``authz.usage.reports`` sums them: the bucket arrays add
element-wise, which SQL's ``sum()`` cannot); ``prune`` is ``hokusai db prune-usage``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row

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


async def upsert(url: str, rows: list[tuple[Any, ...]], timeout: float) -> None:
    """Add ``rows`` (key, minute, route, method, status class, counts, buckets) in one batch."""
    connect = psycopg.AsyncConnection.connect(url, connect_timeout=max(1, int(timeout)))
    async with await connect as conn, conn.cursor() as cur:
        await cur.executemany(UPSERT, rows)


def prune(conn: psycopg.Connection[Any], older_than: timedelta) -> int:
    """Delete rollups of minutes older than ``older_than``; returns the rows deleted."""
    cur = conn.execute("DELETE FROM api_key_usage WHERE minute < now() - %s", (older_than,))
    return cur.rowcount


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


def grouped(
    conn: psycopg.Connection[Any],
    key_id: str | None,
    since: datetime,
    by: str,
    interval: timedelta | None = None,
) -> Iterator[tuple[Any, ...]]:
    """``(label, count, errors, latency sum, latency max, buckets)`` rows since ``since``, of one
    key (or all), labelled by ``by``: a ``GROUP_LABELS`` name, or "interval" (the start of each
    ``interval``, epoch seconds as text)."""
    if by == "interval":
        assert interval is not None
        seconds = max(60, int(interval.total_seconds()))
        label = f"(floor(extract(epoch FROM minute) / {seconds}) * {seconds})::bigint::text"
    else:
        label = GROUP_LABELS[by]
    query = _GROUPED.format(label=label, all_keys="true" if key_id is None else "false")
    cursor = conn.cursor(row_factory=tuple_row)  # whatever the connection's row factory is
    yield from cursor.execute(query, (since, key_id or ""))
