"""The expiry rules of key management, from the central key policy (``authz/keys/policy.py``):
never in the past; never beyond the key's maximum lifetime (the smallest of the global, per-scope
and per-environment rules that match it), and then a key without an expiry gets the maximum; a
``live`` key must expire when the policy requires it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from authz.errors import InvalidInput
from authz.keys.durations import format_duration
from authz.keys.policy import KeyPolicy
from authz.management.views import iso

Clock = Callable[[], datetime]
POLICY_HINT = "(key policy: `hokusai policy show`)"


class ExpiryPolicy:
    """The expiry of one key under ``policy``, for a key of ``scopes`` and ``env``."""

    def __init__(self, policy: KeyPolicy, clock: Clock) -> None:
        self.policy = policy
        self._clock = clock

    def maximum(self, scopes: Iterable[str], env: str) -> timedelta | None:
        seconds = self.policy.max_lifetime_for(scopes, env)
        return None if seconds is None else timedelta(seconds=seconds)

    def resolve(
        self,
        expires_at: datetime | None,
        expires_in: timedelta | None,
        *,
        scopes: Iterable[str],
        env: str,
        born: datetime | None = None,
    ) -> datetime | None:
        """The expiry for a key created at ``born`` (now for a new key)."""
        if expires_at is not None and expires_in is not None:
            raise InvalidInput("give an expiry time or a lifetime, not both")
        now = self._clock()
        if expires_in is not None:
            if expires_in <= timedelta(0):
                raise InvalidInput("the lifetime must be positive")
            expires_at = now + expires_in
        born = born or now
        most = self.maximum(scopes, env)
        if expires_at is None:
            if most is not None:
                return born + most
            self.require_expiry(env)
            return None
        expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
        if expires_at <= now:
            raise InvalidInput(f"the expiry {iso(expires_at)} is in the past")
        if most is not None and expires_at > born + most:
            raise InvalidInput(
                f"the expiry {iso(expires_at)} is beyond the maximum key lifetime "
                f"of {format_duration(most)} for this key {POLICY_HINT}"
            )
        return expires_at

    def capped(
        self, lifetime: timedelta | None, scopes: Iterable[str], env: str
    ) -> timedelta | None:
        """A lifetime held to the maximum (a key made before the policy may be longer-lived)."""
        most = self.maximum(scopes, env)
        if most is None or lifetime is None:
            return lifetime
        return min(lifetime, most)

    def require_expiry(self, env: str, scopes: Iterable[str] = ()) -> None:
        if self.maximum(scopes, env) is not None:
            raise InvalidInput(f"keys must expire: a maximum key lifetime applies {POLICY_HINT}")
        if self.policy.must_expire(env):
            raise InvalidInput(f"live keys must expire: give --expires-in {POLICY_HINT}")
