"""How the CLI prints: readable tables for people, stable JSON (``--json``) for scripts.

Results go to stdout; warnings and errors go to stderr, one line each. The JSON shapes are
documented in docs/cli.md and only ever grow (new fields), never change.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from authz.management.views import AuditEntry, KeyView

ONCE_WARNING = (
    "warning: this is the only time the key is shown; store it now (e.g. in a secret manager)."
)


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def note(message: str) -> None:
    """One line for people on stderr, so stdout stays clean for pipes."""
    print(message, file=sys.stderr)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain left-aligned table; an empty one still prints its header."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def limits(view: KeyView) -> str:
    rate = (
        "default"
        if view.rate_limit_per_hour is None
        else ("unlimited" if view.rate_limit_per_hour == 0 else f"{view.rate_limit_per_hour}/h")
    )
    return rate if view.burst is None else f"{rate} burst {view.burst}"


KEY_HEADERS = (
    "ID",
    "PREFIX",
    "NAME",
    "ENV",
    "STATUS",
    "SCOPES",
    "LIMITS",
    "CREATED",
    "EXPIRES",
    "LAST USED",
)


def key_rows(views: Sequence[KeyView]) -> list[list[str]]:
    return [
        [
            v.key_id,
            v.display_prefix,
            v.name,
            v.env,
            v.status.replace("_", " "),
            ",".join(v.scopes),
            limits(v),
            when(v.created_at),
            when(v.expires_at),
            when(v.last_used_at),
        ]
        for v in views
    ]


def key_details(view: KeyView) -> str:
    """``show-key``: one field per line."""
    fields: list[tuple[str, str]] = [
        ("id", view.key_id),
        ("prefix", view.display_prefix),
        ("user", view.user_email),
        ("name", view.name),
        ("env", view.env),
        ("status", view.status.replace("_", " ")),
        ("scopes", ",".join(view.scopes)),
        ("limits", limits(view)),
        ("allowed ips", ",".join(view.allowed_ips) or "any"),
        ("created", when(view.created_at)),
        ("expires", when(view.expires_at)),
        ("last used", when(view.last_used_at)),
        ("revoked", when(view.revoked_at)),
        ("revoked reason", view.revoked_reason or "-"),
        ("rotated from", view.rotated_from or "-"),
        ("metadata", _pairs(view.metadata)),
    ]
    width = max(len(name) for name, _ in fields)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in fields)


def _pairs(values: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(values.items())) or "-"


AUDIT_HEADERS = ("ID", "AT", "ACTION", "KEY", "ACTOR", "CHANGED")


def audit_rows(entries: Sequence[AuditEntry]) -> list[list[str]]:
    return [
        [
            str(e.id),
            e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            e.action,
            e.key_id or "-",
            e.actor,
            _changed(e),
        ]
        for e in entries
    ]


def _changed(entry: AuditEntry) -> str:
    if entry.action in {"create", "rotate", "delete"}:
        return "-"
    names = sorted(entry.changes)
    return ",".join(names)[:60] or "-"
