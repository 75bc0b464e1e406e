"""The central key policy as a value (no I/O): the rules, and what they make of one key.

The policy lives in Postgres (``key_policy``, one row; ``authz/storage/policy.py`` reads and
writes it), set by ``hokusai policy set`` or ``PUT /api/v1/auth/policy``. It is enforced twice:

* when a key is created, changed or rotated (``authz/management/expiry.py``): the expiry must be
  within the key's maximum lifetime, and a ``live`` key must expire when that is required;
* on every check, for existing keys whoever made them (``authz/check/checker.py`` phase 5): a key
  is ``expired`` past ``created_at`` + its maximum lifetime, ``inactive`` past its last use (or
  creation) + the inactivity expiry. ``deadlines`` is computed once per record and policy
  (``Deadlines`` memoises it), so a warm check pays one dict lookup.

A key's maximum lifetime is the smallest of the rules that match it: the global one, the one of
each of its scopes, the one of its environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from authz.keys.record import KeyRecord

MEMO_SIZE = 100_000  # records whose deadlines are kept; cleared whole when full


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    max_lifetime: float | None = None  # seconds; None: no global maximum
    max_lifetime_scope: Mapping[str, float] = field(default_factory=dict)
    max_lifetime_env: Mapping[str, float] = field(default_factory=dict)
    inactivity_expiry: float | None = None  # seconds
    require_expiry_live: bool = False
    version: int = 0  # the row's version; 0: never loaded (no rules)

    @property
    def enforces_at_check(self) -> bool:
        """Whether existing keys can be refused by this policy (else the check skips it)."""
        return bool(
            self.max_lifetime
            or self.max_lifetime_scope
            or self.max_lifetime_env
            or self.inactivity_expiry
        )

    def max_lifetime_for(self, scopes: Iterable[str], env: str) -> float | None:
        """The smallest maximum lifetime (seconds) of the rules matching a key; None: none."""
        limits = [self.max_lifetime] if self.max_lifetime else []
        limits += [self.max_lifetime_scope[s] for s in scopes if s in self.max_lifetime_scope]
        if env in self.max_lifetime_env:
            limits.append(self.max_lifetime_env[env])
        return min(limits) if limits else None

    def must_expire(self, env: str) -> bool:
        return self.require_expiry_live and env == "live"

    def deadlines(self, record: KeyRecord) -> tuple[float | None, float | None]:
        """(expired from, inactive from) in epoch seconds for one record; None: never."""
        lifetime = self.max_lifetime_for(record.scopes, record.env)
        expiry = None if lifetime is None or not record.created_at else record.created_at + lifetime
        inactive = None
        if self.inactivity_expiry and record.created_at:
            last = max(record.last_used_at or 0.0, record.created_at)
            inactive = last + self.inactivity_expiry
        return expiry, inactive

    def to_json(self) -> dict[str, Any]:
        return {
            "max_lifetime": self.max_lifetime,
            "max_lifetime_scope": dict(sorted(self.max_lifetime_scope.items())),
            "max_lifetime_env": dict(sorted(self.max_lifetime_env.items())),
            "inactivity_expiry": self.inactivity_expiry,
            "require_expiry_live": self.require_expiry_live,
            "version": self.version,
        }


class Deadlines:
    """``KeyPolicy.deadlines`` memoised per record object and policy object.

    Both are immutable and replaced whole on every change (a record comes anew from the store, a
    policy from every reload, even one made with raw SQL that left the version alone), so the
    objects themselves are the memo's identity; holding them keeps their ids from being reused.
    """

    __slots__ = ("_memo",)

    def __init__(self) -> None:
        self._memo: dict[str, tuple[KeyRecord, KeyPolicy, float | None, float | None]] = {}

    def of(self, policy: KeyPolicy, record: KeyRecord) -> tuple[float | None, float | None]:
        hit = self._memo.get(record.key_id)
        if hit is not None and hit[0] is record and hit[1] is policy:
            return hit[2], hit[3]
        expiry, inactive = policy.deadlines(record)
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[record.key_id] = (record, policy, expiry, inactive)
        return expiry, inactive
