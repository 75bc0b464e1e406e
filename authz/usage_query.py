"""One key's usage over a period, from the per-minute rollups in ``api_key_usage``.

The one query behind ``GET /api/v1/auth/keys/{id}/usage`` (and meant for ``hokusai auth usage``):
totals, status classes, latency and the busiest routes, in two statements over the rollups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

TOP_ROUTES = 20

_TOTALS = """
SELECT status_class, sum(count)::bigint AS requests, sum(errors)::bigint AS errors,
       sum(latency_sum_ms) AS latency_sum_ms, max(latency_max_ms) AS latency_max_ms,
       max(minute) AS last_minute
  FROM api_key_usage WHERE key_id = %s AND minute >= %s
 GROUP BY status_class
"""
_ROUTES = """
SELECT route, method, sum(count)::bigint AS requests, sum(errors)::bigint AS errors
  FROM api_key_usage WHERE key_id = %s AND minute >= %s
 GROUP BY route, method ORDER BY requests DESC, route, method LIMIT %s
"""


@dataclass(frozen=True, slots=True)
class RouteUsage:
    route: str
    method: str
    requests: int
    errors: int


@dataclass(frozen=True, slots=True)
class KeyUsage:
    key_id: str
    since: datetime
    requests: int
    errors: int
    by_status_class: dict[str, int]  # "2xx" → requests
    latency_avg_ms: float | None
    latency_max_ms: float | None
    last_seen_minute: datetime | None
    routes: tuple[RouteUsage, ...]


def key_usage(conn: psycopg.Connection[Any], key_id: str, since: datetime) -> KeyUsage:
    """Usage of ``key_id`` from ``since`` (inclusive, minute resolution); zeros when unused."""
    cursor = conn.cursor(row_factory=tuple_row)  # whatever the connection's row factory is
    rows = cursor.execute(_TOTALS, [key_id, since]).fetchall()
    requests = sum(int(r[1]) for r in rows)
    latency_sum = sum(float(r[3]) for r in rows)
    latencies = [float(r[4]) for r in rows]
    minutes = [r[5] for r in rows if r[5] is not None]
    routes = cursor.execute(_ROUTES, [key_id, since, TOP_ROUTES]).fetchall()
    return KeyUsage(
        key_id=key_id, since=since, requests=requests, errors=sum(int(r[2]) for r in rows),
        by_status_class={f"{int(r[0])}xx": int(r[1]) for r in sorted(rows)},
        latency_avg_ms=latency_sum / requests if requests else None,
        latency_max_ms=max(latencies) if latencies else None,
        last_seen_minute=max(minutes) if minutes else None,
        routes=tuple(RouteUsage(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in routes),
    )
