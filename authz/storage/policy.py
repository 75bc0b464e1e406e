"""The SQL of the central key policy (``key_policy``, one row): read, written, announced.

``read`` / ``write`` run on management's connection (``authz/management/``: one transaction that
set ``hokusai.actor``, so the trigger's audit row names who changed it); ``load`` is the check
path's (``authz/server.py`` loads it at start and on every ``:policy`` notification). ``write``
bumps the version (shown to people); the trigger (``migrations/0003_events_policy.up.sql``) writes
``policy.update`` to the audit log and sends ``NOTIFY hokusai_keys ':policy'`` — for raw SQL
changes too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from authz.errors import StoreUnavailable
from authz.keys.policy import KeyPolicy

NOTIFY_PAYLOAD = ":policy"  # on the keys channel; a key id is never this
_SELECT = """
SELECT extract(epoch FROM max_lifetime)::float8, max_lifetime_scope, max_lifetime_env,
       extract(epoch FROM inactivity_expiry)::float8, require_expiry_live, version
  FROM key_policy
"""
COLUMNS = frozenset(
    {
        "max_lifetime",
        "max_lifetime_scope",
        "max_lifetime_env",
        "inactivity_expiry",
        "require_expiry_live",
    }
)


def _policy(row: tuple[Any, ...] | None) -> KeyPolicy:
    if row is None:
        return KeyPolicy()
    lifetime, by_scope, by_env, inactivity, require, version = row
    return KeyPolicy(
        max_lifetime=lifetime,
        max_lifetime_scope={k: float(v) for k, v in (by_scope or {}).items()},
        max_lifetime_env={k: float(v) for k, v in (by_env or {}).items()},
        inactivity_expiry=inactivity,
        require_expiry_live=bool(require),
        version=int(version),
    )


def read(conn: psycopg.Connection[Any]) -> KeyPolicy:
    cursor = conn.cursor(row_factory=tuple_row)
    return _policy(cursor.execute(_SELECT).fetchone())


def write(conn: psycopg.Connection[Any], changes: Mapping[str, Any]) -> None:
    """Set the given columns (names from ``COLUMNS``; lifetimes in seconds or None)."""
    unknown = set(changes) - COLUMNS
    assert not unknown, unknown
    if not changes:
        return
    values = [_value(name, value) for name, value in changes.items()]
    sets = ", ".join(f"{name} = %s" for name in changes)
    conn.execute(f"UPDATE key_policy SET {sets}, version = version + 1, updated_at = now()", values)


def _value(name: str, value: Any) -> Any:
    if name in ("max_lifetime_scope", "max_lifetime_env"):
        return Jsonb(dict(value))
    if name in ("max_lifetime", "inactivity_expiry"):
        return None if value is None else timedelta(seconds=float(value))
    return value


async def load(url: str, timeout: float) -> KeyPolicy:
    """The policy for the check path; ``StoreUnavailable`` when Postgres cannot answer."""
    try:
        async with await psycopg.AsyncConnection.connect(
            url, connect_timeout=max(1, int(timeout)), autocommit=True
        ) as conn:
            cursor = conn.cursor(row_factory=tuple_row)
            row = await (await cursor.execute(_SELECT)).fetchone()
    except psycopg.errors.UndefinedTable:
        return KeyPolicy()  # migrations not applied yet: no policy
    except Exception as exc:
        raise StoreUnavailable(type(exc).__name__) from None
    return _policy(row)
