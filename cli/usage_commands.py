"""``hokusai auth usage`` and ``hokusai db prune-usage``: the usage rollups, read and pruned.

``hokusai auth usage KEY_ID [--since 24h] [--by endpoint|status] [--json]`` shows requests, error
rate, p50/p95 latency, status classes, a chart of requests per interval and the top endpoints;
``hokusai auth usage --top 10`` lists the busiest keys. Errors are responses of 400 and above (and
requests that got no response). Percentiles come from the latency histogram
(authz/usage/rollups.py), so they are exact to within one bucket. The commands attach themselves
to the ``auth`` and ``db`` groups that ``cli.auth_commands`` / ``cli.db_commands`` create
(registered after them).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg

from authz.errors import InvalidInput
from authz.keys import durations
from authz.keys.durations import parse_since
from authz.management.service import utcnow
from authz.management.validation import parse_key_ref
from authz.settings import Settings
from authz.storage import events
from authz.storage.db import connector
from authz.storage.usage import prune
from authz.usage.reports import UsageRow, key_report, report, with_denials
from cli import output
from cli.db_commands import add_database_option, resolve_database_url

SPARK = "▁▂▃▄▅▆▇█"
BAR_WIDTH = 30


def sparkline(values: list[int]) -> str:
    """One character per value: ``·`` for none, then eighth blocks scaled to the maximum."""
    peak = max(values, default=0)
    if peak == 0:
        return "·" * len(values)
    return "".join("·" if v == 0 else SPARK[min(7, math.ceil(v / peak * 8) - 1)] for v in values)


def bar(value: int, peak: int, width: int = BAR_WIDTH) -> str:
    return "█" * max(1 if value else 0, round(width * value / peak)) if peak else ""


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _rate(row: UsageRow) -> str:
    return f"{100 * row.error_rate:.1f}%"


def _group_rows(rows: list[UsageRow], limit: int | None = None) -> list[list[str]]:
    peak = max((r.count for r in rows), default=0)
    return [
        [r.label, str(r.count), str(r.errors), _rate(r), _ms(r.p50), _ms(r.p95), bar(r.count, peak)]
        for r in rows[:limit]
    ]


GROUP_HEADERS = ("REQUESTS", "ERRORS", "ERROR RATE", "P50", "P95", "")


def _connect(args: argparse.Namespace) -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] = connector(resolve_database_url(args.database_url))()
    return conn


def _key_report(args: argparse.Namespace) -> int:
    key_id = parse_key_ref(args.key_id)
    since = parse_since(args.since, utcnow())
    with _connect(args) as conn:
        found = key_report(conn, key_id, since, utcnow())
        refused = {reason: n for _k, reason, n in events.denials(conn, key_id, since)}
    found = with_denials(found, refused)
    if args.json:
        output.emit_json(found.to_json())
        return 0
    print(_summary(key_id, args.since, found.total, found.status_classes))
    if found.denials:
        shown = " · ".join(f"{reason} {n}" for reason, n in found.denials.items())
        print(f"refused  {shown}")
    if args.by is None:
        print(_chart(found.series, found.interval_seconds))
        print("\ntop endpoints")
        print(output.table(("ENDPOINT", *GROUP_HEADERS), _group_rows(found.endpoints, 10)))
    else:
        rows = found.endpoints if args.by == "endpoint" else found.status_classes
        label = "ENDPOINT" if args.by == "endpoint" else "STATUS"
        print(output.table((label, *GROUP_HEADERS), _group_rows(rows)))
    return 0


def _summary(key_id: str, since: str, total: UsageRow | None, statuses: list[UsageRow]) -> str:
    if total is None:
        return f"key {key_id} · since {since}: no requests"
    classes = " · ".join(f"{r.label} {r.count}" for r in sorted(statuses, key=lambda r: r.label))
    return (
        f"key {key_id} · since {since}\n"
        f"requests {total.count}   errors {total.errors} ({_rate(total)})   "
        f"p50 {_ms(total.p50)}   p95 {_ms(total.p95)}   max {_ms(total.latency_max_ms)}\n"
        f"status   {classes}"
    )


def _chart(points: list[tuple[int, int]], step: int) -> str:
    values = [n for _, n in points]
    label = durations.format_duration(timedelta(seconds=step))
    first = output.when(datetime.fromtimestamp(points[0][0]).astimezone()) if points else "-"
    return (
        f"\nrequests per {label} (peak {max(values, default=0)})\n"
        f"{sparkline(values)}\n{first} … now"
    )


def _top(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise InvalidInput("--top must be at least 1")
    since = parse_since(args.since, utcnow())
    with _connect(args) as conn:
        rows = report(conn, None, since, "key")[: args.top]
    if args.json:
        output.emit_json(
            {"since": since.isoformat(), "keys": [{**r.to_json(), "key_id": r.label} for r in rows]}
        )
    else:
        print(output.table(("KEY", *GROUP_HEADERS), _group_rows(rows)))
    return 0


def _usage(args: argparse.Namespace) -> int:
    if (args.key_id is None) == (args.top is None):
        raise InvalidInput("give a KEY_ID or --top N (one of them)")
    return _top(args) if args.top is not None else _key_report(args)


Prune = Callable[[psycopg.Connection[Any], timedelta], int]


def add_prune_command(
    commands: Any, name: str, what: str, retention: Callable[[Settings], float], prune: Prune
) -> None:
    """``hokusai db <name> [--older-than D]``: delete ``what`` older than ``D`` (default: the
    ``retention`` setting). ``prune-usage`` and ``prune-events`` are both made here."""

    def handler(args: argparse.Namespace) -> int:
        older = (
            timedelta(seconds=retention(Settings.from_env()))
            if args.older_than is None
            else durations.parse_duration(args.older_than)
        )
        with _connect(args) as conn:
            deleted = prune(conn, older)
        if args.json:
            output.emit_json({"deleted": deleted, "older_than_seconds": older.total_seconds()})
        else:
            print(f"deleted {deleted} {what} older than {durations.format_duration(older)}")
        return 0

    parser = subcommands(commands, "db").add_parser(
        name, help=f"delete {what} older than the retention"
    )
    parser.add_argument(
        "--older-than", metavar="DURATION", help="e.g. 30d (default: the retention)"
    )
    add_database_option(parser)
    parser.set_defaults(handler=handler)


def subcommands(commands: Any, group: str) -> Any:
    """The sub-parsers action of an existing group (``auth``, ``db``)."""
    parser = commands.choices[group]
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def register(commands: Any) -> None:
    """Add ``auth usage`` and ``db prune-usage`` (after auth_commands and db_commands)."""
    parser = subcommands(commands, "auth").add_parser(
        "usage", help="a key's requests, errors, latency and endpoints, or the busiest keys"
    )
    parser.add_argument("key_id", nargs="?", metavar="KEY_ID", help="key id or hk_<env>_<id>")
    parser.add_argument(
        "--since", default="24h", metavar="DURATION|ISO-8601", help="period to report (default 24h)"
    )
    parser.add_argument("--by", choices=("endpoint", "status"), help="one table, grouped so")
    parser.add_argument("--top", type=int, metavar="N", help="the N busiest keys instead")
    add_database_option(parser)
    parser.set_defaults(handler=_usage)
    add_prune_command(
        commands, "prune-usage", "usage rows", lambda settings: settings.usage_retention, prune
    )
