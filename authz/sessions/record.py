"""The session record the check path works from: what the caches hold and the store returns.

It never holds the session id, only its hash. A session of kind ``key`` has no scopes of its own:
the Check reads the live record of its key (so revoking, expiring or narrowing the key, or
disabling its user, changes the session at once); kind ``oidc`` (next round) carries the scopes
the sign-in mapped to. ``state`` is the one definition of when a session stops working:
revoked (signed out), past its absolute expiry, or idle longer than its idle timeout.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

KIND_KEY = "key"
KIND_OIDC = "oidc"


class SessionState(enum.Enum):
    ACTIVE = "active"
    IDLE = "idle"  # unused for longer than its idle timeout (as far as this record knows)
    ENDED = "ended"  # signed out, revoked, or past its absolute expiry


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id_hash: str  # hex SHA-256 of the cookie value (authz.sessions.cookie.id_hash)
    kind: str
    key_id: str | None  # kind "key"
    user_id: int
    scopes: frozenset[str] | None  # kind "oidc" only
    created_at: float  # epoch seconds
    last_seen_at: float
    idle_timeout: float  # seconds
    expires_at: float  # absolute end
    revoked_at: float | None
    user_disabled_at: float | None  # kind "oidc" decides on it (kind "key": the key's record)
    version: int

    @classmethod
    def started(
        cls, id_hash: str, key_id: str, user_id: int, now: float, *, idle: float, lifetime: float
    ) -> SessionRecord:
        """A key's session as it is right after sign-in (what the store would return)."""
        return cls(
            id_hash=id_hash,
            kind=KIND_KEY,
            key_id=key_id,
            user_id=user_id,
            scopes=None,
            created_at=now,
            last_seen_at=now,
            idle_timeout=idle,
            expires_at=now + lifetime,
            revoked_at=None,
            user_disabled_at=None,
            version=1,
        )

    @property
    def cache_id(self) -> str:
        return self.id_hash

    def state(self, now: float, seen: float | None = None) -> SessionState:
        """The session's state at ``now``; ``seen`` is when this instance last saw it in use
        (the record's ``last_seen_at`` is written in batches, so it may lag)."""
        if (self.revoked_at is not None and self.revoked_at <= now) or now >= self.expires_at:
            return SessionState.ENDED
        last = self.last_seen_at if seen is None else max(seen, self.last_seen_at)
        if now - last > self.idle_timeout:
            return SessionState.IDLE
        return SessionState.ACTIVE

    def ended(self, at: float) -> SessionRecord:
        """This record, known to have ended at ``at`` (kept in-process so an idle session
        costs no second store read)."""
        return SessionRecord(**{**self._fields(), "revoked_at": at})

    def _fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def to_json(self) -> bytes:
        """Serialised form for the shared Redis cache (a hash, never the id)."""
        fields = self._fields()
        fields["scopes"] = None if self.scopes is None else sorted(self.scopes)
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SessionRecord:
        data: dict[str, Any] = json.loads(raw)
        scopes = data["scopes"]
        return cls(**{**data, "scopes": None if scopes is None else frozenset(scopes)})
