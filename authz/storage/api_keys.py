"""The ``api_keys`` table as code reads it: its column lists and what a row becomes, in one place.

Two readers, two projections of one join (``api_keys`` × ``users``):

* the check path (``store.py``) reads what a decision needs — timestamps as epoch seconds (the
  user's ``disabled_at`` apart from the key's ``revoked_at``, so a denial can say which), networks
  as text — and builds a ``KeyRecord``;
* key management (``authz.management.repository``) reads every public field and builds a
  ``KeyView`` from ``public_fields`` (the hash is never selected there).

Writes are management's (``repository.py``), last-used batches the store's; triggers write the
audit log and ``NOTIFY hokusai_keys`` on every change (``migrations/``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from authz.keys.record import KeyRecord

KEYS_JOIN = "api_keys k JOIN users u ON u.id = k.user_id"

RECORD_SELECT = f"""
SELECT k.key_id, k.user_id, k.env, k.secret_hash, k.scopes,
       extract(epoch FROM k.expires_at)::float8,
       extract(epoch FROM k.revoked_at)::float8,
       k.allowed_ips::text[], k.rate_limit_per_hour, k.burst, k.version,
       extract(epoch FROM u.disabled_at)::float8,
       extract(epoch FROM k.created_at)::float8, extract(epoch FROM k.last_used_at)::float8
  FROM {KEYS_JOIN}
 WHERE k.key_id = %s
"""


def record_from_row(row: tuple[Any, ...]) -> KeyRecord:
    """A ``RECORD_SELECT`` row as the record the check path works from."""
    key_id, user_id, env, secret_hash, scopes, expires, revoked, ips, limit, burst, version = row[
        :11
    ]
    disabled, created, last_used = row[11:14]
    return KeyRecord(
        key_id=key_id,
        user_id=int(user_id),
        env=env,
        secret_hash=secret_hash,
        scopes=frozenset(scopes or ()),
        expires_at=expires,
        revoked_at=revoked,
        networks=tuple(ipaddress.ip_network(n) for n in ips or ()),
        rate_limit_per_hour=limit,
        burst=burst,
        version=int(version),
        disabled_at=disabled,
        created_at=float(created or 0.0),
        last_used_at=last_used,
    )


PUBLIC_SELECT = f"""
SELECT k.key_id, k.display_prefix, u.email AS user_email, k.user_id, k.name, k.env, k.scopes,
       k.created_at, k.expires_at, k.last_used_at, k.revoked_at, k.revoked_reason,
       k.rate_limit_per_hour, k.burst, k.allowed_ips, k.rotated_from, k.metadata
  FROM {KEYS_JOIN}
"""
# Usable keys: not revoked, not expired.
ACTIVE = "k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())"


def public_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``PUBLIC_SELECT`` row (dict rows) as plain values: lists as tuples, networks as text."""
    return {
        **row,
        "scopes": tuple(row["scopes"]),
        "allowed_ips": tuple(str(n) for n in row["allowed_ips"] or ()),
        "metadata": dict(row["metadata"] or {}),
    }
