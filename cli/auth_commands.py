"""``hokusai auth …``: key management against Postgres, through ``authz.management`` only.

Handlers turn argument strings into the service's typed values (with the service's own parsers)
and print; every rule lives in the service. A new key's token goes to stdout once, the warning that
it will not be shown again to stderr.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from authz.errors import InvalidInput
from authz.keys import scopes as scope_rules
from authz.keys.durations import parse_period, parse_rate, parse_since, parse_timestamp
from authz.keys.format import NewKey
from authz.management.service import utcnow
from authz.management.validation import parse_key_ref, parse_metadata
from authz.management.views import KeyChanges, KeyView
from cli import output
from cli.db_commands import add_database_option, key_service

# Actions the triggers write (migrations/): key changes, the key policy, browser sessions, users.
AUDIT_ACTIONS = (
    "create",
    "update",
    "revoke",
    "rotate",
    "delete",
    "policy.update",
    "session.signin",
    "session.signin_refused",
    "session.signout",
    "session.revoke",
    "user.disable",
    "user.enable",
)


def _expiry(args: argparse.Namespace) -> tuple[datetime | None, Any]:
    expires_at = None if args.expires_at is None else parse_timestamp(args.expires_at)
    expires_in = None if args.expires_in is None else parse_period(args.expires_in)
    return expires_at, expires_in


def _create(args: argparse.Namespace) -> int:
    expires_at, expires_in = _expiry(args)
    service = key_service(args)
    view, new = service.create_key(
        user_email=args.user,
        name=args.name,
        env=args.env,
        scopes=scope_rules.parse(args.scopes) if args.scopes else scope_rules.DEFAULT_SCOPES,
        expires_at=expires_at,
        expires_in=expires_in,
        rate_limit_per_hour=None if args.rate_limit is None else parse_rate(args.rate_limit),
        burst=args.burst,
        allowed_ips=args.allow_ip or (),
        metadata=parse_metadata(args.metadata or []),
    )
    _show_new_key(
        args, view, new, f"created {view.display_prefix} ({view.name}) for {view.user_email}"
    )
    return 0


def _show_new_key(
    args: argparse.Namespace,
    view: KeyView,
    new: NewKey,
    what: str,
    extra: dict[str, Any] | None = None,
) -> None:
    if args.json:
        output.emit_json({"token": new.token, "key": view.to_json(), **(extra or {})})
    else:
        output.note(
            f"{what}; scopes {','.join(view.scopes)}; expires {output.when(view.expires_at)}"
        )
        print(new.token)
    output.note(output.ONCE_WARNING)


def _list(args: argparse.Namespace) -> int:
    expiring = None if args.expiring is None else parse_period(args.expiring)
    views = key_service(args).list_keys(
        user_email=args.user, include_inactive=args.all, expiring=expiring
    )
    if args.json:
        output.emit_json({"keys": [v.to_json() for v in views]})
    else:
        print(output.table(output.KEY_HEADERS, output.key_rows(views)))
    return 0


def _show(args: argparse.Namespace) -> int:
    key_id = parse_key_ref(args.key_id)
    view = key_service(args).get_key(key_id)
    if args.json:
        output.emit_json(view.to_json())
    else:
        print(output.key_details(view))
    return 0


def _update(args: argparse.Namespace) -> int:
    key_id = parse_key_ref(args.key_id)
    expires_at, expires_in = _expiry(args)
    if (args.clear_allowed_ips and args.allow_ip) or (args.clear_metadata and args.metadata):
        raise InvalidInput("give new values or clear them, not both")
    changes = KeyChanges(
        name=args.name,
        scopes=None if args.scopes is None else scope_rules.parse(args.scopes),
        expires_at=expires_at,
        expires_in=expires_in,
        clear_expiry=args.no_expiry,
        rate_limit_per_hour=None if args.rate_limit is None else parse_rate(args.rate_limit),
        burst=args.burst,
        allowed_ips=() if args.clear_allowed_ips else args.allow_ip,
        metadata={}
        if args.clear_metadata
        else (None if args.metadata is None else parse_metadata(args.metadata)),
    )
    if changes == KeyChanges():
        raise InvalidInput("nothing to update: give at least one option (see --help)")
    view = key_service(args).update_key(key_id, changes)
    if args.json:
        output.emit_json(view.to_json())
    else:
        print(output.key_details(view))
    return 0


def _revoke(args: argparse.Namespace) -> int:
    key_id = parse_key_ref(args.key_id)
    view, already = key_service(args).revoke_key(key_id, args.reason)
    if args.json:
        output.emit_json({"key": view.to_json(), "already_revoked": already})
    elif already:
        print(
            f"{view.display_prefix} was already revoked at {output.when(view.revoked_at)}; "
            "nothing changed"
        )
    else:
        print(f"revoked {view.display_prefix} at {output.when(view.revoked_at)}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    key_id = parse_key_ref(args.key_id)
    grace = None if args.grace is None else parse_period(args.grace)
    rotation = key_service(args).rotate_key(key_id, grace)
    old = rotation.old
    _show_new_key(
        args,
        rotation.new,
        rotation.token,
        f"rotated {old.display_prefix} → {rotation.new.display_prefix}; "
        f"the old key works until {output.when(old.expires_at)}",
        {"previous": old.to_json()},
    )
    return 0


def _audit(args: argparse.Namespace) -> int:
    if args.verify:
        return _verify(args)
    key_id = None if args.key is None else parse_key_ref(args.key)
    since = None if args.since is None else parse_since(args.since, utcnow())
    entries = key_service(args).audit_entries(
        key_id=key_id, since=since, actor=args.actor, action=args.action, limit=args.limit
    )
    if args.json:
        output.emit_json({"entries": [e.to_json() for e in entries]})
    else:
        print(output.table(output.AUDIT_HEADERS, output.audit_rows(entries)))
    return 0


def _verify(args: argparse.Namespace) -> int:
    result = key_service(args).verify_audit_chain()
    if args.json:
        output.emit_json(result.to_json())
    elif result.ok:
        print(f"audit chain intact: {result.rows_checked} rows verified")
    if not result.ok:
        output.note(f"error: audit chain broken at row {result.first_broken_id}: {result.reason}")
        return 1
    return 0


def _disable_user(args: argparse.Namespace) -> int:
    user = key_service(args).disable_user(args.email, args.reason)
    if args.json:
        output.emit_json(user.to_json())
    else:
        print(
            f"disabled {user.email} at {output.when(user.disabled_at)}: its keys and browser "
            "sessions are refused on every gateway within a second"
        )
    return 0


def _enable_user(args: argparse.Namespace) -> int:
    user = key_service(args).enable_user(args.email)
    if args.json:
        output.emit_json(user.to_json())
    else:
        print(f"enabled {user.email}: its keys work again (revoked or expired ones do not)")
    return 0


def _key_options(parser: argparse.ArgumentParser, *, create: bool) -> None:
    """The options create-key and update-key share (update: given ones replace)."""
    parser.add_argument("--name", required=create, help="what the key is for (1-200 characters)")
    parser.add_argument(
        "--scopes",
        metavar="LIST",
        help=f"comma-separated, of {','.join(scope_rules.SCOPES)}"
        + (" (default: mlflow:read)" if create else ""),
    )
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--expires-in", metavar="DURATION", help="lifetime, e.g. 30d, 12h")
    when.add_argument("--expires-at", metavar="ISO-8601", help="expiry time (UTC if no offset)")
    if not create:
        when.add_argument("--no-expiry", action="store_true", help="remove the expiry")
    parser.add_argument(
        "--rate-limit",
        metavar="RATE",
        help="requests per period, e.g. 1000/h, 50/min; 0 = unlimited",
    )
    parser.add_argument("--burst", type=int, metavar="N", help="requests allowed at once")
    parser.add_argument(
        "--allow-ip",
        action="append",
        metavar="CIDR",
        help="accept the key only from this network (repeatable)",
    )
    parser.add_argument(
        "--metadata", action="append", metavar="KEY=VALUE", help="free-form label (repeatable)"
    )
    if not create:
        parser.add_argument(
            "--clear-allowed-ips", action="store_true", help="accept the key from any address"
        )
        parser.add_argument("--clear-metadata", action="store_true", help="remove all metadata")
    add_database_option(parser)


def register(commands: Any) -> None:
    """Add ``hokusai auth …`` to the top-level sub-commands."""
    group = commands.add_parser("auth", help="API keys: create, list, revoke, rotate, audit")
    sub = group.add_subparsers(dest="auth_command", required=True, metavar="COMMAND")

    parser = sub.add_parser("create-key", help="create a key and print it once")
    parser.add_argument("--user", required=True, metavar="EMAIL", help="owner (created if new)")
    parser.add_argument("--env", choices=("live", "test"), default="live")
    _key_options(parser, create=True)
    parser.set_defaults(handler=_create)

    parser = sub.add_parser("list-keys", help="list keys (never their secrets)")
    parser.add_argument("--user", metavar="EMAIL", help="only this user's keys")
    parser.add_argument("--all", action="store_true", help="include revoked and expired keys")
    parser.add_argument(
        "--expiring",
        metavar="DURATION",
        help="only usable keys that expire within DURATION (e.g. 14d), soonest first",
    )
    add_database_option(parser)
    parser.set_defaults(handler=_list)

    parser = sub.add_parser("show-key", help="one key's details")
    parser.add_argument("key_id", metavar="KEY_ID", help="key id or hk_<env>_<id>")
    add_database_option(parser)
    parser.set_defaults(handler=_show)

    parser = sub.add_parser("update-key", help="change a key's name, scopes, expiry, limits, IPs")
    parser.add_argument("key_id", metavar="KEY_ID", help="key id or hk_<env>_<id>")
    _key_options(parser, create=False)
    parser.set_defaults(handler=_update)

    parser = sub.add_parser("revoke-key", help="revoke a key now (idempotent)")
    parser.add_argument("key_id", metavar="KEY_ID", help="key id or hk_<env>_<id>")
    parser.add_argument("--reason", metavar="TEXT", help="recorded with the revocation")
    add_database_option(parser)
    parser.set_defaults(handler=_revoke)

    parser = sub.add_parser("rotate-key", help="issue a replacement; the old key expires later")
    parser.add_argument("key_id", metavar="KEY_ID", help="key id or hk_<env>_<id>")
    parser.add_argument(
        "--grace", metavar="DURATION", help="how long the old key keeps working (default 24h)"
    )
    add_database_option(parser)
    parser.set_defaults(handler=_rotate)

    parser = sub.add_parser("audit", help="the audit log, or --verify its hash chain")
    parser.add_argument("--key", metavar="KEY_ID", help="only this key's entries")
    parser.add_argument("--since", metavar="DURATION|ISO-8601", help="e.g. 7d, or a time")
    parser.add_argument("--actor", help="only changes by this actor, e.g. cli:alice")
    parser.add_argument("--action", choices=AUDIT_ACTIONS)
    parser.add_argument("--limit", type=int, default=1000, help="newest N entries (default 1000)")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="check the hash chain; exit 1 naming the first broken row",
    )
    add_database_option(parser)
    parser.set_defaults(handler=_audit)

    parser = sub.add_parser("disable-user", help="refuse every key and session of a user now")
    parser.add_argument("email", metavar="EMAIL")
    parser.add_argument("--reason", metavar="TEXT", help="recorded with the change")
    add_database_option(parser)
    parser.set_defaults(handler=_disable_user)

    parser = sub.add_parser("enable-user", help="let a disabled user's keys work again")
    parser.add_argument("email", metavar="EMAIL")
    add_database_option(parser)
    parser.set_defaults(handler=_enable_user)
