"""What callers see of keys and the audit log, and what they pass to change a key.

``KeyView`` is the one field list of a key: a frozen pydantic model that the CLI prints
(``to_json``: the stable JSON of ``docs/cli.md``) and the REST API returns (``KeyOut`` in
``authz.api.models`` only gives it its name there). Its timestamps are UTC. ``AuditEntry`` is the
same for an audit row. Neither holds a hash or a secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict

from authz.keys import format as key_format

EXPIRING_SOON = timedelta(days=7)
Status = Literal["active", "expiring_soon", "expired", "revoked"]


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC with a ``Z``, or None."""
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


UtcTime = Annotated[datetime, AfterValidator(_utc)]


def status_of(expires_at: datetime | None, revoked_at: datetime | None, now: datetime) -> Status:
    if revoked_at is not None:
        return "revoked"
    if expires_at is not None and expires_at <= now:
        return "expired"
    if expires_at is not None and expires_at - now <= EXPIRING_SOON:
        return "expiring_soon"
    return "active"


class KeyView(BaseModel):
    """Every public field of a key; there is no hash or secret to leak."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    display_prefix: str
    user_email: str
    user_id: int
    name: str
    env: str
    scopes: tuple[str, ...]
    status: Status
    created_at: UtcTime
    expires_at: UtcTime | None
    last_used_at: UtcTime | None
    revoked_at: UtcTime | None
    revoked_reason: str | None
    rate_limit_per_hour: int | None
    burst: int | None
    allowed_ips: tuple[str, ...]
    rotated_from: str | None
    metadata: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form (documented in docs/cli.md): timestamps ISO-8601 UTC or null."""
        return {
            **self.model_dump(),
            "scopes": list(self.scopes),
            "allowed_ips": list(self.allowed_ips),
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "last_used_at": iso(self.last_used_at),
            "revoked_at": iso(self.revoked_at),
        }


@dataclass(frozen=True, slots=True)
class KeyChanges:
    """An update: ``None`` leaves a field alone; ``clear_expiry`` removes the expiry;
    an empty ``allowed_ips`` or ``metadata`` clears it (lists replace, they do not merge)."""

    name: str | None = None
    scopes: Sequence[str] | None = None
    expires_at: datetime | None = None
    expires_in: timedelta | None = None
    clear_expiry: bool = False
    rate_limit_per_hour: int | None = None
    burst: int | None = None
    allowed_ips: Sequence[str] | None = None
    metadata: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Rotation:
    new: KeyView
    token: key_format.NewKey  # shown once
    old: KeyView  # with its shortened expiry


class AuditEntry(BaseModel):
    """One row of the audit log (written by triggers, hash-chained)."""

    model_config = ConfigDict(frozen=True)

    id: int
    at: UtcTime
    action: str
    key_id: str | None
    actor: str
    changes: dict[str, Any]
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {**self.model_dump(), "at": iso(self.at)}


class UserView(BaseModel):
    """A user as ``disable-user`` / ``enable-user`` and the REST API show it."""

    model_config = ConfigDict(frozen=True)

    user_id: int
    email: str
    disabled_at: UtcTime | None
    disabled_reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {**self.model_dump(), "disabled_at": iso(self.disabled_at)}


@dataclass(frozen=True, slots=True)
class AuditVerification:
    ok: bool
    rows_checked: int
    first_broken_id: int | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows_checked": self.rows_checked,
            "first_broken_id": self.first_broken_id,
            "reason": self.reason,
        }
