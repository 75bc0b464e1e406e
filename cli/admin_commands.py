"""``hokusai auth events``, ``hokusai policy set|show``, ``hokusai auth webhook-deliveries`` and
``hokusai db prune-events``: what platform administrators see and set (issue 15).

Handlers parse argument strings into the service's values and print; every rule is key
management's (``authz.management``). The commands attach themselves to the ``auth`` and ``db``
groups (registered after ``cli.auth_commands`` and ``cli.db_commands``) and add ``policy``.
"""

from __future__ import annotations

import argparse
from datetime import UTC, timedelta
from typing import Any

from authz.check.reasons import Reason
from authz.keys import durations
from authz.keys.durations import parse_since
from authz.keys.policy import KeyPolicy
from authz.management.events import DeliveryView, EventView
from authz.management.policy import PolicyUpdate, parse_pairs
from authz.management.service import utcnow
from authz.storage.events import prune
from cli import output
from cli.db_commands import add_database_option, key_service
from cli.usage_commands import add_prune_command, subcommands

EVENT_HEADERS = ("TIME", "KEY", "USER", "REASON", "CLIENT", "REQUEST", "COUNT")
DELIVERY_HEADERS = ("ID", "KEY", "THRESHOLD", "EXPIRES", "STATUS", "ATTEMPTS", "LAST ERROR")


def _events(args: argparse.Namespace) -> int:
    since = None if args.since is None else parse_since(args.since, utcnow())
    found = key_service(args).events(
        key_id=args.key,
        user_email=args.user,
        reason=args.reason,
        since=since,
        limit=args.limit,
    )
    if args.json:
        output.emit_json({"events": [e.to_json() for e in found]})
    else:
        print(output.table(EVENT_HEADERS, event_rows(found)))
    return 0


def event_rows(found: list[EventView]) -> list[list[str]]:
    return [
        [
            e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            e.key_id or "-",
            e.user_email or "-",
            e.reason,
            e.client_address or "-",
            f"{e.method} {e.route}".strip() or "-",
            str(e.count),
        ]
        for e in found
    ]


def _span(seconds: float | None) -> str:
    return "off" if not seconds else durations.format_duration(timedelta(seconds=seconds))


def policy_lines(policy: KeyPolicy) -> str:
    """``hokusai policy show``: one rule per line."""
    pairs = [
        ("max lifetime", _span(policy.max_lifetime)),
        *[
            (f"max lifetime, scope {name}", _span(v))
            for name, v in sorted(policy.max_lifetime_scope.items())
        ],
        *[
            (f"max lifetime, env {name}", _span(v))
            for name, v in sorted(policy.max_lifetime_env.items())
        ],
        ("inactivity expiry", _span(policy.inactivity_expiry)),
        ("live keys must expire", "on" if policy.require_expiry_live else "off"),
        ("version", str(policy.version)),
    ]
    width = max(len(name) for name, _ in pairs)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in pairs)


def _policy_show(args: argparse.Namespace) -> int:
    policy = key_service(args).policy()
    if args.json:
        output.emit_json(policy.to_json())
    else:
        print(policy_lines(policy))
    return 0


def _on_off(text: str | None) -> bool | None:
    return None if text is None else text == "on"


def _policy_set(args: argparse.Namespace) -> int:
    update = PolicyUpdate(
        max_lifetime=args.max_lifetime,
        max_lifetime_scope=parse_pairs(args.max_lifetime_scope, "--max-lifetime-scope"),
        max_lifetime_env=parse_pairs(args.max_lifetime_env, "--max-lifetime-env"),
        inactivity_expiry=args.inactivity_expiry,
        require_expiry_live=_on_off(args.require_expiry_live),
    )
    policy = key_service(args).set_policy(update)
    if args.json:
        output.emit_json(policy.to_json())
    else:
        print(policy_lines(policy))
    return 0


def _deliveries(args: argparse.Namespace) -> int:
    found = key_service(args).deliveries(args.key, args.limit)
    if args.json:
        output.emit_json({"deliveries": [d.to_json() for d in found]})
    else:
        print(output.table(DELIVERY_HEADERS, delivery_rows(found)))
    return 0


def delivery_rows(found: list[DeliveryView]) -> list[list[str]]:
    return [
        [
            str(d.id),
            d.key_id,
            _span(d.threshold_s),
            output.when(d.expires_at),
            d.status,
            str(d.attempts),
            (d.last_error or "-")[:40],
        ]
        for d in found
    ]


def _register_events(auth: Any) -> None:
    parser = auth.add_parser("events", help="refused checks and sign-ins: who tried what")
    parser.add_argument("--key", metavar="KEY_ID", help="only this key's events")
    parser.add_argument("--user", metavar="EMAIL", help="only this user's events")
    parser.add_argument(
        "--reason", choices=[r.value for r in Reason if r is not Reason.ALLOWED], metavar="REASON"
    )
    parser.add_argument("--since", metavar="DURATION|ISO-8601", help="e.g. 24h, or a time")
    parser.add_argument("--limit", type=int, default=100, help="newest N events (default 100)")
    add_database_option(parser)
    parser.set_defaults(handler=_events)
    parser = auth.add_parser("webhook-deliveries", help="the expiry-warning delivery log")
    parser.add_argument("--key", metavar="KEY_ID", help="only this key's warnings")
    parser.add_argument("--limit", type=int, default=100, help="newest N (default 100)")
    add_database_option(parser)
    parser.set_defaults(handler=_deliveries)


def _register_policy(commands: Any) -> None:
    group = commands.add_parser("policy", help="the central key policy: lifetimes, inactivity")
    sub = group.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
    show = sub.add_parser("show", help="the policy every key is held to")
    show.set_defaults(handler=_policy_show)
    add_database_option(show)
    parser = sub.add_parser("set", help="change rules (audited; every gateway reloads them)")
    parser.add_argument("--max-lifetime", metavar="DURATION|off", help="every key, e.g. 90d")
    parser.add_argument(
        "--max-lifetime-scope",
        action="append",
        metavar="SCOPE=DURATION",
        help="keys holding SCOPE, e.g. admin=7d (repeatable; SCOPE=off removes)",
    )
    parser.add_argument(
        "--max-lifetime-env",
        action="append",
        metavar="ENV=DURATION",
        help="keys of ENV, e.g. live=30d (repeatable; ENV=off removes)",
    )
    parser.add_argument(
        "--inactivity-expiry", metavar="DURATION|off", help="unused this long: refused, e.g. 60d"
    )
    parser.add_argument("--require-expiry-live", choices=("on", "off"))
    add_database_option(parser)
    parser.set_defaults(handler=_policy_set)


def register(commands: Any) -> None:
    """``auth events``, ``auth webhook-deliveries``, ``db prune-events``, ``policy …``."""
    _register_events(subcommands(commands, "auth"))
    add_prune_command(
        commands,
        "prune-events",
        "authentication events",
        lambda settings: settings.events_retention,
        prune,
    )
    _register_policy(commands)
