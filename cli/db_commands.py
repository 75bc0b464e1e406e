"""``hokusai db migrate|rollback|status|prune-sessions``, and how every command finds and opens
the database.

The database URL comes from ``--database-url``, else ``HOKUSAI_DATABASE_URL``, else the local
stack's record ``<data dir>/stack.json`` (written by ``hokusai gateway up``). Output shows URLs
only through ``authz.storage.db.redact_url``; connections come from ``authz.storage.db``.
"""

from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path
from typing import Any

from authz.errors import InvalidInput
from authz.management.service import KeyService, open_key_service
from authz.management.sessions import SessionService
from authz.settings import Settings, data_dir
from authz.storage import db, migrations
from cli import output

STACK_FILE = "stack.json"


def resolve_database_url(arg: str | None, settings: Settings | None = None) -> str:
    """``--database-url``, else ``HOKUSAI_DATABASE_URL``, else the local stack's ``stack.json``."""
    if arg:
        return arg
    settings = settings or Settings.from_env()
    if settings.database_url:
        return settings.database_url
    record = Path(data_dir()) / STACK_FILE
    try:
        url = json.loads(record.read_text()).get("database_url")
    except (OSError, ValueError, AttributeError):
        url = None
    if not isinstance(url, str) or not url:
        raise InvalidInput(
            "no database: pass --database-url, set HOKUSAI_DATABASE_URL, "
            "or start the local stack with `hokusai gateway up`"
        )
    return url


def actor() -> str:
    """Who the audit log records for CLI changes: the operating-system user."""
    return f"cli:{getpass.getuser()}"


def key_service(args: argparse.Namespace) -> KeyService:
    settings = Settings.from_env()
    url = resolve_database_url(args.database_url, settings)
    return open_key_service(url, settings, actor())


def add_database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="PostgreSQL URL (default: HOKUSAI_DATABASE_URL, else the local stack)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _migrate(args: argparse.Namespace) -> int:
    url = resolve_database_url(args.database_url)
    applied: list[int] = migrations.migrate(url)
    if args.json:
        output.emit_json({"applied": applied, "database": db.redact_url(url)})
    elif applied:
        print(f"applied {', '.join(f'{v:04d}' for v in applied)} on {db.redact_url(url)}")
    else:
        print(f"already up to date: {db.redact_url(url)}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    if args.to is not None and args.to < 0:
        raise InvalidInput("--to must be a migration version (0 undoes them all)")
    url = resolve_database_url(args.database_url)
    undone: list[int] = migrations.rollback(url, args.to)
    if args.json:
        output.emit_json({"rolled_back": undone, "database": db.redact_url(url)})
    elif undone:
        print(f"rolled back {', '.join(f'{v:04d}' for v in undone)} on {db.redact_url(url)}")
    else:
        print(f"nothing to roll back: {db.redact_url(url)}")
    return 0


def _status(args: argparse.Namespace) -> int:
    url = resolve_database_url(args.database_url)
    rows: list[migrations.MigrationStatus] = migrations.status(url)
    if args.json:
        output.emit_json(
            {
                "database": db.redact_url(url),
                "migrations": [
                    {
                        "version": r.version,
                        "name": r.name,
                        "applied_at": None if r.applied_at is None else r.applied_at.isoformat(),
                    }
                    for r in rows
                ],
            }
        )
        return 0
    print(db.redact_url(url))
    print(
        output.table(
            ("VERSION", "NAME", "APPLIED"),
            [
                [
                    f"{r.version:04d}",
                    r.name,
                    output.when(r.applied_at) if r.applied_at else "pending",
                ]
                for r in rows
            ],
        )
    )
    return 0


def _prune_sessions(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    url = resolve_database_url(args.database_url, settings)
    deleted = SessionService(db.connector(url), settings).prune(actor())
    if args.json:
        output.emit_json({"deleted": deleted})
    else:
        print(f"deleted {deleted} ended browser sessions")
    return 0


def register(commands: Any) -> None:
    """Add ``hokusai db …`` to the top-level sub-commands."""
    group = commands.add_parser("db", help="database migrations")
    sub = group.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    parser = sub.add_parser("migrate", help="apply pending migrations (idempotent)")
    add_database_option(parser)
    parser.set_defaults(handler=_migrate)
    parser = sub.add_parser("rollback", help="undo the latest migration, or all above --to N")
    parser.add_argument("--to", type=int, metavar="N", help="keep versions up to N (0: undo all)")
    add_database_option(parser)
    parser.set_defaults(handler=_rollback)
    parser = sub.add_parser("status", help="which migrations are applied")
    add_database_option(parser)
    parser.set_defaults(handler=_status)
    parser = sub.add_parser(
        "prune-sessions", help="delete ended browser sessions (signed out, expired, idle)"
    )
    add_database_option(parser)
    parser.set_defaults(handler=_prune_sessions)
