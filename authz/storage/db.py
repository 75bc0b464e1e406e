"""Opening PostgreSQL connections, and showing their URLs without the password.

Every place that may print, log or raise with a database URL passes it through ``redact_url``.
``connect`` turns "cannot reach the server" into one ``DatabaseUnavailable`` line naming host:port.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from authz.errors import DatabaseUnavailable

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
