"""PostgreSQL connections — single, pooled, probed — and their URLs shown without the password.

Every place that may print, log or raise with a database URL passes it through ``redact_url``.
``connect`` turns "cannot reach the server" into one ``DatabaseUnavailable`` line naming host:port.
Key management borrows connections through a ``ConnectionFactory``: ``connector`` (one connection
per operation: the CLI) or ``pooled_connector`` (the keys REST API). The check path has its own
async pool (``store.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from authz.errors import DatabaseUnavailable, StoreUnavailable
from authz.settings import Settings

REDACTED = "***"
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def _redact_netloc(parts: SplitResult) -> str:
    if parts.password is None:
        return parts.netloc
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{user}:{REDACTED}@{hostinfo}"


def redact_url(url: str) -> str:
    """The URL or libpq keyword string with any password replaced by ``***``."""
    if "://" not in url:
        return _KEYWORD_PASSWORD.sub(rf"\g<1>{REDACTED}", url)
    try:
        parts = urlsplit(url)
        query = [
            (k, REDACTED if k.lower() == "password" else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
        netloc = _redact_netloc(parts)
    except ValueError:
        return "(unparsable database URL)"
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))


def _password(url: str) -> str | None:
    try:
        value = conninfo_to_dict(url).get("password")
    except psycopg.Error:
        return None
    return None if value is None else str(value)


def endpoint(url: str) -> str:
    """``host:port`` of a database URL, for messages."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "(unparsable database URL)"
    return f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}"


def scrub(message: str, url: str) -> str:
    """First line of a driver message, with the URL's password removed should it appear."""
    line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    password = _password(url)
    if password:
        line = line.replace(password, REDACTED)
    return line


Connection = psycopg.Connection[Any]
ConnectionFactory = Callable[[], Connection]


def connector(url: str) -> ConnectionFactory:
    """A factory of ``connect(url)`` connections (the key service opens one per operation)."""
    return lambda: connect(url)


def connect(
    url: str, *, timeout: float = 5.0, autocommit: bool = False
) -> psycopg.Connection[TupleRow]:
    """A sync connection; ``DatabaseUnavailable`` (host:port and the reason) when it fails."""
    try:
        return psycopg.connect(
            url, connect_timeout=max(1, math.ceil(timeout)), autocommit=autocommit
        )
    except psycopg.OperationalError as exc:
        reason = scrub(str(exc), url)
        raise DatabaseUnavailable(f"database unavailable at {endpoint(url)}: {reason}") from None


def ping(url: str, timeout: float = 2.0) -> bool:
    """Whether the database at ``url`` answers a query (health probes)."""
    try:
        with psycopg.connect(url, connect_timeout=max(1, math.ceil(timeout))) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def ensure_database(url: str, name: str) -> None:
    """Create the database ``name`` on the server of ``url`` unless it exists (the local stack)."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if exists.fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


class _PooledConnection(psycopg.Connection[TupleRow]):
    """Leaving ``with conn`` gives the connection back to the pool.

    The service opens and closes a connection per operation (``with conn``); psycopg leaves a
    pooled connection open on exit, so this returns it (the pool has ``close_returns``).
    """

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        super().__exit__(exc_type, exc_val, exc_tb)
        self.close()


def pooled_connector(settings: Settings) -> tuple[ConnectionPool[Any], ConnectionFactory]:
    """A connection pool for the service, and the factory that borrows from it."""
    timeout = max(1.0, settings.database_timeout)
    pool: ConnectionPool[Any] = ConnectionPool(
        settings.database_url,
        min_size=1,
        max_size=settings.api_pool_size,
        open=False,
        connection_class=_PooledConnection,
        timeout=timeout,
        close_returns=True,
        check=ConnectionPool.check_connection,
        kwargs={"connect_timeout": max(1, int(timeout))},
    )

    def connect() -> Connection:
        try:
            conn: Connection = pool.getconn()
        except PoolTimeout:
            raise StoreUnavailable(
                "no database connection available (pool exhausted or database unreachable)"
            ) from None
        return conn

    return pool, connect
