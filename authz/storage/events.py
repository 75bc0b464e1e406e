"""The SQL of authentication events (``auth_events``): batched inserts, queries, pruning.

``insert`` is the recorder's one write (``authz/events/recorder.py``): ``COPY`` of a batch in
one transaction. ``query`` serves ``hokusai auth events`` and the REST API's event endpoints
(through ``authz/management/``), ``denials`` the per-reason counts beside a key's usage;
``prune`` is ``hokusai db prune-events`` and ``prune_once`` the authz server's hourly pruning,
under an advisory lock so that one instance of many does it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

COLUMNS = (
    "at",
    "kind",
    "key_id",
    "user_id",
    "reason",
    "client_address",
    "route",
    "method",
    "count",
)
_COPY = f"COPY auth_events ({', '.join(COLUMNS)}, instance) FROM STDIN"
PRUNE_LOCK = 7355608003  # advisory lock: one pruning instance at a time (0001 uses …001, …002)
_DELETE = "DELETE FROM auth_events WHERE at < now() - %s"


async def insert(url: str, rows: Sequence[tuple[Any, ...]], instance: str, timeout: float) -> None:
    """Write ``rows`` (``COLUMNS`` order, ``at`` in whole epoch seconds) in one transaction."""
    connect = psycopg.AsyncConnection.connect(url, connect_timeout=max(1, int(timeout)))
    async with await connect as conn, conn.cursor() as cur, cur.copy(_COPY) as copy:
        for row in rows:
            await copy.write_row((datetime.fromtimestamp(row[0]).astimezone(), *row[1:], instance))


async def prune_once(url: str, older_than: timedelta, timeout: float) -> int | None:
    """Delete events older than ``older_than`` unless another instance is pruning (then None)."""
    connect = psycopg.AsyncConnection.connect(url, connect_timeout=max(1, int(timeout)))
    async with await connect as conn, conn.transaction():
        locked = await (
            await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", [PRUNE_LOCK])
        ).fetchone()
        if not locked or not locked[0]:
            return None
        cur = await conn.execute(_DELETE, [older_than])
        return cur.rowcount


def prune(conn: psycopg.Connection[Any], older_than: timedelta) -> int:
    """Delete events older than ``older_than``; returns the rows deleted."""
    return conn.execute(_DELETE, [older_than]).rowcount


_SELECT = """
SELECT e.id, e.at, e.count, e.kind, e.key_id, e.user_id, u.email AS user_email, e.reason,
       host(e.client_address) AS client_address, e.route, e.method, e.instance
  FROM auth_events e LEFT JOIN users u ON u.id = e.user_id
"""


def query(
    conn: psycopg.Connection[Any],
    filters: Mapping[str, Any],
    since: datetime | None,
    limit: int,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Events newest first, filtered by ``key_id``, ``user_email``, ``reason``, ``kind``."""
    where, params = ["TRUE"], list[Any]()
    for column, sql in (
        ("key_id", "e.key_id = %s"),
        ("user_email", "lower(u.email) = %s"),
        ("reason", "e.reason = %s"),
        ("kind", "e.kind = %s"),
    ):
        if filters.get(column) is not None:
            where.append(sql)
            params.append(filters[column])
    if since is not None:
        where.append("e.at >= %s")
        params.append(since)
    statement = (
        f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY e.at DESC, e.id DESC LIMIT %s OFFSET %s"
    )
    cursor = conn.cursor(row_factory=dict_row)
    return list(cursor.execute(statement, [*params, limit, offset]).fetchall())


def denials(
    conn: psycopg.Connection[Any], key_id: str | None, since: datetime
) -> list[tuple[str, str, int]]:
    """``(key id, reason, count)`` of refused checks since ``since``, of one key (or all)."""
    cursor = conn.cursor(row_factory=tuple_row)
    rows = cursor.execute(
        """SELECT key_id, reason, sum(count) FROM auth_events
            WHERE kind = 'denied' AND at >= %s AND (%s::text IS NULL OR key_id = %s)
            GROUP BY key_id, reason ORDER BY sum(count) DESC, reason""",
        [since, key_id, key_id],
    ).fetchall()
    return [(str(k), str(r), int(n)) for k, r, n in rows]
