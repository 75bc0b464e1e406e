"""The key SQL of management: users, keys and the audit log, on one connection per transaction.

``transaction(connect, actor)`` opens a connection, starts a transaction, sets ``hokusai.actor``
(transaction-local: the audit rows the database triggers write name who did it; the same triggers
``NOTIFY`` every gateway) and yields a ``KeyRepository``. A failed transaction writes nothing;
driver errors leave as ``HokusaiError``s whose messages name host:port, never a password or a
row. Reads return plain field dicts (``authz.storage.api_keys.public_fields``); the service makes
views of them.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from authz.errors import Conflict, StoreUnavailable
from authz.keys.format import ParsedKey
from authz.keys.policy import KeyPolicy
from authz.storage import events as events_sql
from authz.storage import policy as policy_sql
from authz.storage import webhooks as webhooks_sql
from authz.storage.api_keys import ACTIVE, PUBLIC_SELECT, public_fields
from authz.storage.db import Connection, ConnectionFactory
from authz.usage import reports

_CIDR = "::text[]::cidr[]"
Repo = TypeVar("Repo")


def transaction(connect: ConnectionFactory, actor: str) -> AbstractContextManager[KeyRepository]:
    """One connection, one transaction, the actor set; driver errors become HokusaiErrors."""
    return transaction_of(connect, actor, KeyRepository)


@contextmanager
def transaction_of(
    connect: ConnectionFactory, actor: str, repository: Callable[[Connection], Repo]
) -> Iterator[Repo]:
    """``transaction`` with another repository on the connection (sessions, …)."""
    conn = connect()
    where = f"{conn.info.host}:{conn.info.port}"
    try:
        with conn, conn.transaction():
            conn.row_factory = dict_row  # type: ignore[assignment]
            conn.execute("SELECT set_config('hokusai.actor', %s, true)", [actor])
            yield repository(conn)
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction):
        raise StoreUnavailable(
            f"the database at {where} has no key tables: run `hokusai db migrate`"
        ) from None
    except psycopg.errors.IntegrityError as exc:
        # message_primary only: the detail line quotes the row, hash included.
        raise Conflict(f"the database refused the change: {exc.diag.message_primary}") from None
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"database at {where} failed: {type(exc).__name__}") from None


class KeyRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # --- keys -------------------------------------------------------------------------------

    def key(self, key_id: str, *, lock: bool = False) -> dict[str, Any] | None:
        sql = PUBLIC_SELECT + " WHERE k.key_id = %s" + (" FOR UPDATE OF k" if lock else "")
        row = self._conn.execute(sql, [key_id]).fetchone()
        return None if row is None else public_fields(row)

    def keys(
        self,
        user_email: str | None,
        include_inactive: bool,
        limit: int,
        offset: int,
        expiring_before: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; by default only usable keys; ``expiring_before``: usable keys that
        expire before then, soonest first."""
        where, params = ["TRUE"], list[Any]()
        if user_email is not None:
            where.append("lower(u.email) = %s")
            params.append(user_email)
        if not include_inactive or expiring_before is not None:
            where.append(ACTIVE)
        order = "k.created_at DESC, k.key_id"
        if expiring_before is not None:
            where.append("k.expires_at <= %s")
            params.append(expiring_before)
            order = "k.expires_at, k.key_id"
        sql = (
            PUBLIC_SELECT
            + " WHERE "
            + " AND ".join(where)
            + f" ORDER BY {order} LIMIT %s OFFSET %s"
        )
        rows = self._conn.execute(sql, [*params, limit, offset]).fetchall()
        return [public_fields(row) for row in rows]

    def user(self, email: str) -> tuple[int, bool]:
        """The user's id (created on first use) and whether the user is disabled."""
        self._conn.execute(
            "INSERT INTO users (email) VALUES (%s) ON CONFLICT ((lower(email))) DO NOTHING", [email]
        )
        row = self._conn.execute(
            "SELECT id, disabled_at FROM users WHERE lower(email) = %s", [email]
        ).fetchone()
        assert row is not None  # inserted or already there, in this transaction
        return int(row["id"]), row["disabled_at"] is not None

    def set_disabled(self, email: str, reason: str | None, disable: bool) -> dict[str, Any] | None:
        """Disable (now, with ``reason``) or enable a user; its row after, or None if unknown.
        A trigger audits the change and announces every key and live session of the user."""
        row = self._conn.execute(
            """UPDATE users
                  SET disabled_at = CASE WHEN %s THEN coalesce(disabled_at, now()) END,
                      disabled_reason = CASE WHEN %s THEN %s END
                WHERE lower(email) = %s
            RETURNING id, email, disabled_at, disabled_reason""",
            [disable, disable, reason, email],
        ).fetchone()
        return None if row is None else dict(row)

    def user_email(self, user_id: int) -> str | None:
        row = self._conn.execute("SELECT email FROM users WHERE id = %s", [user_id]).fetchone()
        return None if row is None else str(row["email"])

    def insert(
        self,
        key: ParsedKey,
        secret_hash: str,
        user_id: int,
        fields: Mapping[str, Any],
        rotated_from: str | None,
    ) -> None:
        """A new key row; ``fields`` holds name, scopes, expiry, limits, networks and metadata."""
        self._conn.execute(
            """INSERT INTO api_keys (key_id, secret_hash, display_prefix, user_id, name, env,
                   scopes, expires_at, rate_limit_per_hour, burst, allowed_ips, rotated_from,
                   metadata)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::text[]::cidr[], %s, %s)""",
            [
                key.key_id,
                secret_hash,
                key.display_prefix,
                user_id,
                fields["name"],
                key.env,
                list(fields["scopes"]),
                fields["expires_at"],
                fields["rate_limit_per_hour"],
                fields["burst"],
                list(fields["allowed_ips"]),
                rotated_from,
                Jsonb(dict(fields["metadata"])),
            ],
        )

    def update(self, key_id: str, columns: Mapping[str, Any]) -> None:
        """Set the given columns (validated names only: the service builds ``columns``)."""
        if not columns:
            return
        values = [Jsonb(dict(v)) if name == "metadata" else v for name, v in columns.items()]
        sets = ", ".join(
            f"{name} = %s" + (_CIDR if name == "allowed_ips" else "") for name in columns
        )
        self._conn.execute(f"UPDATE api_keys SET {sets} WHERE key_id = %s", [*values, key_id])

    def revoke(self, key_id: str, reason: str | None) -> None:
        self._conn.execute(
            "UPDATE api_keys SET revoked_at = now(), revoked_reason = %s WHERE key_id = %s",
            [reason, key_id],
        )

    def usage(self, key_id: str, since: datetime, now: datetime) -> reports.KeyReport:
        report = reports.key_report(self._conn, key_id, since, now)
        denied = {reason: n for _k, reason, n in events_sql.denials(self._conn, key_id, since)}
        return reports.with_denials(report, denied)

    # --- policy, events, expiry-warning deliveries ---------------------------------------------

    def policy(self) -> KeyPolicy:
        return policy_sql.read(self._conn)

    def set_policy(self, columns: Mapping[str, Any]) -> None:
        policy_sql.write(self._conn, columns)

    def events(
        self, filters: Mapping[str, Any], since: datetime | None, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        return events_sql.query(self._conn, filters, since, limit, offset)

    def deliveries(self, key_id: str | None, limit: int) -> list[dict[str, Any]]:
        return webhooks_sql.deliveries(self._conn, key_id, limit)

    # --- audit ------------------------------------------------------------------------------

    def audit(
        self, filters: Mapping[str, Any], since: datetime | None, limit: int
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` rows matching ``filters`` (key_id, actor, action), oldest first."""
        where: list[str] = ["TRUE"]
        params: list[Any] = []
        for column in ("key_id", "actor", "action"):
            if filters.get(column) is not None:
                where.append(f"{column} = %s")
                params.append(filters[column])
        if since is not None:
            where.append("at >= %s")
            params.append(since)
        sql = (
            "SELECT * FROM (SELECT id, at, action, key_id, actor, changes, hash FROM audit_log"
            f" WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s) AS recent ORDER BY id"
        )
        return list(self._conn.execute(sql, [*params, limit]).fetchall())

    def audit_chain(self) -> Generator[Mapping[str, Any], None, None]:
        """Every row in id order with its hash recomputed in SQL (``hokusai_audit_hash``, the one
        definition), streamed through a server-side cursor."""
        with self._conn.cursor(name="hokusai_audit_verify") as cursor:
            cursor.execute("""SELECT id, prev_hash, hash,
                                     hokusai_audit_hash(id, at, action, key_id, actor, changes,
                                                        prev_hash) AS computed
                                FROM audit_log ORDER BY id""")
            yield from cursor
