"""The SQL of expiry warnings: which keys crossed a threshold, the delivery log, one runner.

``claim`` inserts one ``webhook_deliveries`` row per key and threshold crossed — the unique
``(key_id, threshold_s)`` makes that once, however many instances race — and marks a pending
warning ``superseded`` when a smaller threshold of the same key is due too (a key made with two
days to live gets one warning, not three). ``due`` locks the rows to send now (``SKIP LOCKED``:
two runners never send the same row); ``attempted`` records each try. ``RUNNER_LOCK`` is the
advisory lock that lets one instance at a time run the whole pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

RUNNER_LOCK = 7355608004

_CLAIM = """
INSERT INTO webhook_deliveries (key_id, threshold_s, expires_at)
SELECT k.key_id, t.threshold_s, k.expires_at
  FROM api_keys k JOIN users u ON u.id = k.user_id
  CROSS JOIN unnest(%s::bigint[]) AS t(threshold_s)
 WHERE k.revoked_at IS NULL AND u.disabled_at IS NULL
   AND k.expires_at > now() AND k.expires_at <= now() + make_interval(secs => t.threshold_s)
ON CONFLICT (key_id, threshold_s) DO NOTHING
"""
_SUPERSEDE = """
UPDATE webhook_deliveries d SET status = 'superseded'
 WHERE d.status = 'pending' AND EXISTS (
       SELECT 1 FROM webhook_deliveries s
        WHERE s.key_id = d.key_id AND s.threshold_s < d.threshold_s AND s.status <> 'superseded')
"""
_DUE = """
SELECT d.id, d.key_id, d.threshold_s, d.expires_at, d.attempts, k.display_prefix, k.name,
       k.env, u.email AS user_email
  FROM webhook_deliveries d
  JOIN api_keys k ON k.key_id = d.key_id JOIN users u ON u.id = k.user_id
 WHERE d.status = 'pending' AND d.next_attempt_at <= now()
 ORDER BY d.next_attempt_at, d.id
 LIMIT %s
   FOR UPDATE OF d SKIP LOCKED
"""
_ATTEMPTED = """
UPDATE webhook_deliveries
   SET attempts = attempts + 1, last_status = %s, last_error = %s, status = %s,
       next_attempt_at = now() + make_interval(secs => %s),
       delivered_at = CASE WHEN %s = 'delivered' THEN now() END
 WHERE id = %s
"""


def try_lock(conn: psycopg.Connection[Any]) -> bool:
    """The runner's session-level advisory lock (released when the connection closes)."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", [RUNNER_LOCK]).fetchone()
    return bool(row and row[0])


def claim(conn: psycopg.Connection[Any], thresholds: Sequence[float]) -> None:
    conn.execute(_CLAIM, [[int(t) for t in thresholds]])
    conn.execute(_SUPERSEDE)


def due(conn: psycopg.Connection[Any], limit: int) -> list[dict[str, Any]]:
    return list(conn.cursor(row_factory=dict_row).execute(_DUE, [limit]).fetchall())


def attempted(
    conn: psycopg.Connection[Any],
    delivery_id: int,
    *,
    status: str,
    http_status: int | None,
    error: str | None,
    retry_in: float,
) -> None:
    conn.execute(_ATTEMPTED, [http_status, error, status, retry_in, status, delivery_id])


def deliveries(
    conn: psycopg.Connection[Any], key_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """The delivery log, newest first."""
    cursor = conn.cursor(row_factory=dict_row)
    return list(
        cursor.execute(
            """SELECT id, key_id, threshold_s, expires_at, status, attempts, last_status,
                      last_error, created_at, delivered_at
                 FROM webhook_deliveries WHERE (%s::text IS NULL OR key_id = %s)
                ORDER BY created_at DESC, id DESC LIMIT %s""",
            [key_id, key_id, limit],
        ).fetchall()
    )


def expiring(conn: psycopg.Connection[Any], before: datetime) -> int:
    """How many usable keys expire before ``before`` (the doctor and tests)."""
    row = conn.execute(
        "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL"
        " AND expires_at > now() AND expires_at <= %s",
        [before],
    ).fetchone()
    return int(row[0]) if row else 0
