"""The migration runner: ``migrations/NNNN_name.up.sql`` forward, ``NNNN_name.down.sql`` back.

Applied versions are recorded in ``schema_migrations``. Each migration runs in its own
transaction together with its bookkeeping row, so a failure leaves the previous version intact.
A session-level advisory lock serialises runners: several processes may call ``migrate`` at once
and each migration is applied exactly once. Every error is a one-line ``MigrationError`` and shows
the database URL only through ``redact_url``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg.rows import TupleRow

from authz.errors import DatabaseUnavailable, MigrationError
from authz.storage.db import connect, endpoint, scrub

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# Any constant distinct from the audit chain's lock (7355608001) in 0001_initial.
_LOCK_KEY = 7355608002
_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.up\.sql$")
_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""

Conn = psycopg.Connection[TupleRow]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    up: Path
    down: Path

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    version: int
    name: str
    applied_at: datetime | None


def discover(directory: Path | None = None) -> list[Migration]:
    """The migrations on disk, oldest first; every ``up`` needs its ``down``."""
    folder = MIGRATIONS_DIR if directory is None else Path(directory)
    if not folder.is_dir():
        raise MigrationError(f"migrations folder not found: {folder}")
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.up.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise MigrationError(f"badly named migration: {path.name} (want NNNN_name.up.sql)")
        version = int(match["version"])
        if version in found:
            raise MigrationError(f"two migrations numbered {version:04d}")
        down = path.with_name(path.name.replace(".up.sql", ".down.sql"))
        if not down.is_file():
            raise MigrationError(f"{path.name} has no {down.name}")
        found[version] = Migration(version, match["name"], path, down)
    return [found[v] for v in sorted(found)]


@contextmanager
def _locked(url: str) -> Iterator[Conn]:
    """An autocommit connection holding the runner lock, with the bookkeeping table present."""
    try:
        conn = connect(url, autocommit=True)
    except DatabaseUnavailable as exc:
        raise MigrationError(str(exc)) from None
    try:
        with conn:
            _run(
                url,
                "taking the migration lock",
                lambda: conn.execute("SELECT pg_advisory_lock(%s)", [_LOCK_KEY]),
            )
            _run(url, "creating schema_migrations", lambda: conn.execute(_TABLE))
            yield conn
    finally:
        conn.close()  # closing the session releases the advisory lock


def _run(url: str, doing: str, action: Callable[[], object]) -> None:
    """Call ``action``; a driver error becomes a one-line MigrationError."""
    try:
        action()
    except psycopg.Error as exc:
        raise MigrationError(f"{doing} on {endpoint(url)}: {scrub(str(exc), url)}") from None


def _applied(conn: Conn) -> dict[int, tuple[str, datetime]]:
    rows = conn.execute("SELECT version, name, applied_at FROM schema_migrations").fetchall()
    return {int(v): (str(n), at) for v, n, at in rows}


def _apply(conn: Conn, url: str, migration: Migration, *, forward: bool) -> None:
    script = (migration.up if forward else migration.down).read_bytes()
    doing = f"{'applying' if forward else 'undoing'} {migration.label}"

    def transaction() -> None:
        with conn.transaction():
            conn.execute(script)  # several statements: psycopg sends them as one simple query
            if forward:
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    [migration.version, migration.name],
                )
            else:
                conn.execute(
                    "DELETE FROM schema_migrations WHERE version = %s", [migration.version]
                )

    _run(url, doing, transaction)


def migrate(url: str, directory: Path | None = None) -> list[int]:
    """Apply every pending migration, oldest first; returns the versions applied (idempotent)."""
    migrations = discover(directory)
    done: list[int] = []
    with _locked(url) as conn:
        applied = _applied(conn)
        for migration in migrations:
            if migration.version not in applied:
                _apply(conn, url, migration, forward=True)
                done.append(migration.version)
    return done


def rollback(url: str, to: int | None = None, directory: Path | None = None) -> list[int]:
    """Undo migrations newest first: the latest one, or all above version ``to`` (0: all)."""
    by_version = {m.version: m for m in discover(directory)}
    undone: list[int] = []
    with _locked(url) as conn:
        applied = sorted(_applied(conn), reverse=True)
        targets = applied[:1] if to is None else [v for v in applied if v > to]
        for version in targets:
            if version not in by_version:
                raise MigrationError(f"version {version:04d} is applied but has no files here")
            _apply(conn, url, by_version[version], forward=False)
            undone.append(version)
    return undone


def status(url: str, directory: Path | None = None) -> list[MigrationStatus]:
    """Every known migration (on disk or recorded), with when it was applied or None."""
    names = {m.version: m.name for m in discover(directory)}
    with _locked(url) as conn:
        applied = _applied(conn)
    versions = sorted(names.keys() | applied.keys())
    return [
        MigrationStatus(
            v, applied[v][0] if v in applied else names[v], applied[v][1] if v in applied else None
        )
        for v in versions
    ]
