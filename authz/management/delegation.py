"""Delegation: what a calling key may do through the REST API (the CLI is the operator).

A key with ``keys:manage`` manages its own user's keys, ``admin`` anyone's; neither may hand out
more than it holds — scopes (``authz.keys.scopes.grants`` decides what implies what) nor networks
wider than its own allowlist.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from authz.errors import Forbidden
from authz.keys import scopes as scope_rules
from authz.management.validation import validate_cidrs, validate_email
from authz.management.views import KeyView


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified calling key: whose it is and what it holds (from its ``KeyRecord``)."""

    key_id: str
    user_id: int
    scopes: frozenset[str]
    networks: tuple[str, ...]  # empty: unrestricted

    @property
    def is_admin(self) -> bool:
        return scope_rules.ADMIN in self.scopes

    @property
    def actor(self) -> str:
        """How the audit log names changes made with this key."""
        return f"api:{self.key_id}"


def require_scope(principal: Principal, scope: str) -> None:
    if not scope_rules.grants(principal.scopes, scope):
        raise Forbidden(f"this key lacks the {scope} scope")


def require_manager(principal: Principal, owner_user_id: int | None = None) -> None:
    """``keys:manage`` for the caller's own keys (``owner_user_id``), ``admin`` for anyone's."""
    require_scope(principal, scope_rules.KEYS_MANAGE)
    if owner_user_id is not None and owner_user_id != principal.user_id and not principal.is_admin:
        raise Forbidden("only an admin key may manage another user's keys")


def check_delegation(
    principal: Principal, scopes: Sequence[str] | None, allowed_ips: Sequence[str] | None
) -> None:
    """A key may grant only scopes it holds, and — when it is itself IP-restricted — only
    networks inside its own (an empty list, unrestricted, is wider than any)."""
    if scopes is not None:
        wanted = scope_rules.normalize(scopes)
        if not scope_rules.is_subset(wanted, principal.scopes):
            extra = sorted(set(wanted) - principal.scopes)
            raise Forbidden(f"a key cannot grant scopes it does not hold: {', '.join(extra)}")
    if allowed_ips is None or not principal.networks:
        return
    mine = [ipaddress.ip_network(n) for n in principal.networks]
    wanted_networks = [ipaddress.ip_network(n) for n in validate_cidrs(allowed_ips)]
    if not wanted_networks:
        raise Forbidden("an IP-restricted key cannot create or widen a key to any address")
    for network in wanted_networks:
        if not any(
            network.version == own.version and network.subnet_of(own)  # type: ignore[arg-type]
            for own in mine
        ):
            raise Forbidden(f"{network} is outside this key's own allowed networks")


def owner_for(principal: Principal, caller_email: str, requested: str | None) -> str:
    """Whose keys a call is about: the caller's own user, or (admin keys only) another."""
    if requested is None:
        return caller_email
    email = validate_email(requested)
    if email != caller_email.lower() and not principal.is_admin:
        raise Forbidden("only an admin key may manage another user's keys")
    return email


def check_change(
    principal: Principal,
    current: KeyView,
    scopes: Sequence[str] | None,
    allowed_ips: Sequence[str] | None,
) -> None:
    """A key may change or rotate only a key whose resulting grants it could create itself."""
    require_manager(principal, current.user_id)
    check_delegation(
        principal,
        current.scopes if scopes is None else scopes,
        current.allowed_ips if allowed_ips is None else allowed_ips,
    )
