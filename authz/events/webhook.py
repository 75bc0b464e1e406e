"""Expiry warnings: a signed webhook, once per key and threshold, retried, logged.

``ExpiryNotifier.run_once`` (the authz server calls it every ``INTERVAL`` in a worker thread —
authz because every deployment runs it, the keys API being optional) takes the runner lock
(``authz/storage/webhooks.py``: one instance at a time), claims the warnings due — one row per key
and threshold crossed, unique, so racing instances still deliver once — and POSTs each as JSON::

    {"event": "key.expiring", "key_id": …, "display_prefix": …, "name": …, "env": …,
     "user_email": …, "expires_at": …, "threshold": "3d", "sent_at": …}

signed with ``X-Hokusai-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>``
(``sign``; receivers check it with ``verify``). A failure (no answer, or a status other than 2xx)
is retried with exponential backoff up to ``MAX_ATTEMPTS``; every attempt is in the delivery log
(``hokusai auth webhook-deliveries``) with its status and a one-line error — never the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from authz.keys.durations import format_duration
from authz.storage import webhooks as webhooks_sql
from authz.storage.db import connect

log = logging.getLogger(__name__)

INTERVAL = 60.0
MAX_ATTEMPTS = 8
BACKOFF_BASE, BACKOFF_MAX = 30.0, 3600.0
SIGNATURE_HEADER = "X-Hokusai-Signature"
TOLERANCE = 300.0  # seconds a receiver accepts between t= and its clock
BATCH = 100


def sign(secret: str, body: bytes, now: float | None = None) -> str:
    stamp = int(time.time() if now is None else now)
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    """A receiver's check: the signature matches and its time is within ``TOLERANCE``."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        stamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - stamp) > TOLERANCE:
        return False
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures: 30 s, 60 s, … at most an hour."""
    return float(min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(0, attempts - 1)))


def payload(row: dict[str, Any], now: datetime) -> bytes:
    return json.dumps(
        {
            "event": "key.expiring",
            "key_id": row["key_id"],
            "display_prefix": row["display_prefix"],
            "name": row["name"],
            "env": row["env"],
            "user_email": row["user_email"],
            "expires_at": row["expires_at"].astimezone(UTC).isoformat(),
            "threshold": format_duration(timedelta(seconds=row["threshold_s"])),
            "sent_at": now.isoformat(),
        },
        sort_keys=True,
    ).encode()


Post = Callable[[str, bytes, dict[str, str]], int]


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 5.0) -> int:
    """POST ``body``; the response status (an HTTP error status too). Raises on no answer."""
    request = urllib.request.Request(url, body, headers, method="POST")  # noqa: S310 - the operator's URL
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class ExpiryNotifier:
    def __init__(
        self,
        database_url: str,
        url: str,
        secret: str,
        thresholds: Sequence[float],
        *,
        send: Post = post,
    ) -> None:
        self._db, self._url, self._secret = database_url, url, secret
        self._thresholds = tuple(thresholds)
        self._send = send

    def run_once(self) -> int:
        """One pass: claim what is due and deliver it; returns the deliveries attempted (0 when
        another instance holds the runner lock)."""
        with connect(self._db, autocommit=True) as conn:
            if not webhooks_sql.try_lock(conn):
                return 0
            webhooks_sql.claim(conn, self._thresholds)
            attempted = 0
            while attempted < 10 * BATCH:
                with conn.transaction():
                    rows = webhooks_sql.due(conn, BATCH)
                    for row in rows:
                        self._deliver(conn, row)
                attempted += len(rows)
                if len(rows) < BATCH:
                    return attempted
            return attempted

    def _deliver(self, conn: Any, row: dict[str, Any]) -> None:
        body = payload(row, datetime.now(UTC))
        headers = {
            "content-type": "application/json",
            "user-agent": "hokusai-gateway",
            SIGNATURE_HEADER: sign(self._secret, body),
        }
        status: int | None = None
        try:
            status = self._send(self._url, body, headers)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except Exception as exc:  # any failure to get an answer is one retry later
            error = f"{type(exc).__name__}: no answer"
        attempts = int(row["attempts"]) + 1
        if error is None:
            outcome = "delivered"
        else:
            outcome = "failed" if attempts >= MAX_ATTEMPTS else "pending"
            log.warning(
                "expiry warning not delivered",
                extra={"key_id": row["key_id"], "attempt": attempts, "error": error},
            )
        webhooks_sql.attempted(
            conn,
            row["id"],
            status=outcome,
            http_status=status,
            error=error,
            retry_in=backoff(attempts),
        )
