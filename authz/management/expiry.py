"""The expiry policy: never in the past, never beyond ``HOKUSAI_MAX_KEY_LIFETIME`` when it is set
(and then a key without an expiry gets the maximum)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from authz.errors import InvalidInput
from authz.management.views import iso
from authz.settings import Settings

Clock = Callable[[], datetime]


class ExpiryPolicy:
    """Expiry rules: never in the past, never beyond ``max_key_lifetime`` when it is set (and
    then a key without an expiry gets the maximum)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        lifetime = settings.max_key_lifetime
        self._max = timedelta(seconds=lifetime) if lifetime else None
        self._clock = clock

    def resolve(
        self,
        expires_at: datetime | None,
        expires_in: timedelta | None,
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
        if expires_at is None:
            return born + self._max if self._max else None
        expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
        if expires_at <= now:
            raise InvalidInput(f"the expiry {iso(expires_at)} is in the past")
        if self._max and expires_at > born + self._max:
            raise InvalidInput(
                f"the expiry {iso(expires_at)} is beyond the maximum key lifetime "
                f"of {self._max.days} days (HOKUSAI_MAX_KEY_LIFETIME)"
            )
        return expires_at

    def capped(self, lifetime: timedelta | None) -> timedelta | None:
        """A lifetime held to the maximum (a key made before the policy may be longer-lived)."""
        if self._max is None or lifetime is None:
            return lifetime
        return min(lifetime, self._max)

    def require_expiry(self) -> None:
        if self._max:
            raise InvalidInput("keys must expire: a maximum key lifetime is set")
