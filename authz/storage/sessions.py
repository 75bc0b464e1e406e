"""The ``sessions`` table as code reads and writes it, in one place.

* the check path (``store.py``) reads one session by the hash of its id (``SESSION_SELECT``,
  ``session_from_row``) and writes ``last_seen_at`` in batches (``SESSION_TOUCH``);
* sign-in, sign-out and pruning (``authz.management.sessions``) write through
  ``SessionRepository`` inside ``authz.management.repository.transaction``, so the audit rows the
  triggers write name the actor.

The id itself is never passed here: only its SHA-256 (``authz.sessions.cookie.id_hash``).
Triggers audit sign-ins, sign-outs and revocations and ``NOTIFY hokusai_sessions <hex hash>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from psycopg.types.json import Jsonb

from authz.sessions.record import SessionRecord
from authz.storage.db import Connection

PRUNE_LOCK = 7355608003  # distinct from the audit chain's and the migration runner's locks
SESSION_SELECT = """
SELECT encode(s.id_hash, 'hex'), s.kind, s.key_id, s.user_id, s.scopes,
       extract(epoch FROM s.created_at)::float8, extract(epoch FROM s.last_seen_at)::float8,
       extract(epoch FROM s.idle_timeout)::float8, extract(epoch FROM s.expires_at)::float8,
       extract(epoch FROM s.revoked_at)::float8, extract(epoch FROM u.disabled_at)::float8,
       s.version
  FROM sessions s JOIN users u ON u.id = s.user_id
 WHERE s.id_hash = decode(%s, 'hex')
"""
SESSION_TOUCH = """
UPDATE sessions SET last_seen_at = now()
 WHERE id_hash IN (SELECT decode(h, 'hex') FROM unnest(%s::text[]) AS h)
"""


def session_from_row(row: tuple[Any, ...]) -> SessionRecord:
    """A ``SESSION_SELECT`` row (its columns are ``SessionRecord``'s fields, in order) as the
    record the check path works from."""
    fields = list(row)
    fields[4] = None if row[4] is None else frozenset(row[4])  # scopes (kind "oidc")
    return SessionRecord(*fields)


@dataclass(frozen=True, slots=True)
class NewSession:
    id_hash: str
    key_id: str
    user_id: int
    idle_timeout: float  # seconds
    lifetime: float  # seconds until the absolute expiry
    client_address: str | None
    user_agent: str | None


class SessionOwner(NamedTuple):
    """Whose a session was: its key (kind ``key``) and user."""

    key_id: str | None
    user_id: int


class SessionRepository:
    """Session writes on one connection (inside ``management.repository.transaction``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def insert(self, session: NewSession) -> None:
        self._conn.execute(
            """INSERT INTO sessions (id_hash, kind, key_id, user_id, idle_timeout, expires_at,
                   client_address, user_agent)
               VALUES (decode(%s, 'hex'), 'key', %s, %s, make_interval(secs => %s),
                       now() + make_interval(secs => %s), %s, %s)""",
            [
                session.id_hash,
                session.key_id,
                session.user_id,
                session.idle_timeout,
                session.lifetime,
                session.client_address,
                session.user_agent,
            ],
        )

    def revoke(self, id_hash: str, reason: str) -> SessionOwner | None:
        """End a live session; whose it was, or None when there was none."""
        row = self._conn.execute(
            """UPDATE sessions SET revoked_at = now(), revoked_reason = %s, version = version + 1
                WHERE id_hash = decode(%s, 'hex') AND revoked_at IS NULL
            RETURNING key_id, user_id""",
            [reason, id_hash],
        ).fetchone()
        if row is None:
            return None
        key_id, user_id = row if isinstance(row, tuple) else tuple(row.values())
        return SessionOwner(key_id, int(user_id))

    def try_lock(self) -> bool:
        """The pruning lock for this transaction (one instance prunes at a time)."""
        row = self._conn.execute("SELECT pg_try_advisory_xact_lock(%s)", [PRUNE_LOCK]).fetchone()
        return bool(_first(row))

    def prune(self) -> int:
        """Delete every session that can no longer work (ended, expired or idle too long)."""
        cur = self._conn.execute("DELETE FROM sessions s WHERE NOT hokusai_session_live(s)")
        return cur.rowcount

    def audit_refused(self, key_id: str, changes: dict[str, Any]) -> None:
        """A refused sign-in whose key parsed to a key id (never the key or its secret)."""
        self._conn.execute(
            "SELECT hokusai_audit_append('session.signin_refused', %s, %s)",
            [key_id, Jsonb(changes)],
        )


def _first(row: Any) -> Any:
    """The first column of a row, whichever row factory the connection uses."""
    return row[0] if isinstance(row, tuple) else next(iter(row.values()))
