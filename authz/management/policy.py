"""Changing the central key policy (``hokusai policy set``, ``PUT /api/v1/auth/policy``).

Front ends pass what the operator wrote — durations such as ``90d``, or ``off`` to remove a rule;
per-scope and per-environment maxima as ``{name: duration}`` (``off`` removes one) — and this
module turns it into the row's columns with the one set of rules: known scopes and environments,
positive durations. The write, its audit row and the ``NOTIFY`` that reloads every instance are
one transaction (``authz/storage/policy.py``, the trigger in ``migrations/0003``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authz.errors import InvalidInput
from authz.keys import format as key_format
from authz.keys import scopes as scope_rules
from authz.keys.durations import parse_period
from authz.keys.policy import KeyPolicy

OFF = "off"


@dataclass(frozen=True, slots=True)
class PolicyUpdate:
    """What to change; None leaves a field alone."""

    max_lifetime: str | None = None
    max_lifetime_scope: Mapping[str, str] = field(default_factory=dict)
    max_lifetime_env: Mapping[str, str] = field(default_factory=dict)
    inactivity_expiry: str | None = None
    require_expiry_live: bool | None = None

    @property
    def empty(self) -> bool:
        return self == PolicyUpdate()


def _seconds(text: str, what: str) -> float | None:
    if text.strip().lower() == OFF:
        return None
    try:
        value = parse_period(text).total_seconds()
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: {exc.message}") from None
    if value <= 0:
        raise InvalidInput(f"{what} must be positive (or {OFF})")
    return value


def _merged(
    current: Mapping[str, float], wanted: Mapping[str, str], known: tuple[str, ...], what: str
) -> dict[str, float]:
    result = dict(current)
    for name, text in wanted.items():
        if name not in known:
            raise InvalidInput(f"unknown {what} {name[:40]!r}: expected one of {', '.join(known)}")
        seconds = _seconds(text, f"the maximum lifetime of {what} {name}")
        if seconds is None:
            result.pop(name, None)
        else:
            result[name] = seconds
    return result


def columns(update: PolicyUpdate, current: KeyPolicy) -> dict[str, Any]:
    """The ``key_policy`` columns ``update`` sets (validated), from the current policy."""
    if update.empty:
        raise InvalidInput("nothing to change: give at least one rule (see --help)")
    result: dict[str, Any] = {}
    if update.max_lifetime is not None:
        result["max_lifetime"] = _seconds(update.max_lifetime, "the maximum lifetime")
    if update.max_lifetime_scope:
        result["max_lifetime_scope"] = _merged(
            current.max_lifetime_scope, update.max_lifetime_scope, scope_rules.SCOPES, "scope"
        )
    if update.max_lifetime_env:
        result["max_lifetime_env"] = _merged(
            current.max_lifetime_env, update.max_lifetime_env, key_format.ENVIRONMENTS, "env"
        )
    if update.inactivity_expiry is not None:
        result["inactivity_expiry"] = _seconds(update.inactivity_expiry, "the inactivity expiry")
    if update.require_expiry_live is not None:
        result["require_expiry_live"] = update.require_expiry_live
    return result


def parse_pairs(items: list[str] | None, what: str) -> dict[str, str]:
    """``name=duration`` options (``admin=7d``, ``live=off``) as a mapping."""
    result: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise InvalidInput(f"bad {what} {item[:60]!r}: expected NAME=DURATION (or NAME=off)")
        result[name.strip()] = value.strip()
    return result
