"""Pydantic models of every request and response body of the keys REST API.

Requests forbid unknown fields (a typo is a 422, not a silently ignored change) and reject text
the database cannot store (NUL, lone surrogates) before it reaches the service. Every rule beyond
syntax — scopes, CIDRs, expiry policy, delegation — is key management's (``authz.management``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from authz.management.events import DeliveryView, EventView
from authz.management.validation import MAX_LIMIT
from authz.management.views import AuditEntry, KeyView, Rotation, UserView
from authz.usage.reports import KeyReport


def storable(text: str) -> str:
    """Text Postgres can hold: no NUL byte, no lone surrogate."""
    if "\x00" in text or any("\ud800" <= ch <= "\udfff" for ch in text):
        raise ValueError("contains characters that cannot be stored")
    return text


Text = Annotated[str, AfterValidator(storable)]
Limit = Annotated[int, Field(ge=0, le=MAX_LIMIT)]
Scopes = Annotated[list[Text], Field(max_length=16, examples=[["mlflow:read", "mlflow:write"]])]
Networks = Annotated[list[Text], Field(max_length=64, examples=[["10.0.0.0/8"]])]
Metadata = Annotated[dict[Text, Text], Field(max_length=32, examples=[{"team": "ml"}])]
Duration = Annotated[Text, Field(max_length=32, examples=["90d"])]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyCreate(_Request):
    name: Annotated[Text, Field(min_length=1, max_length=200, examples=["ci-pipeline"])]
    env: Literal["live", "test"] = "live"
    scopes: Scopes = Field(default_factory=lambda: ["mlflow:read"])
    expires_at: datetime | None = Field(None, description="ISO-8601; or use expires_in")
    expires_in: Duration | None = Field(None, description="a lifetime such as 90d or 12h")
    rate_limit_per_hour: Limit | None = None
    burst: Limit | None = None
    allowed_ips: Networks = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict)
    user: Annotated[Text, Field(max_length=320)] | None = Field(
        None, description="owner's e-mail (admin keys only; default: the caller's user)"
    )


class KeyUpdate(_Request):
    """Omitted fields stay; lists and metadata replace (an empty list clears)."""

    name: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    scopes: Scopes | None = None
    expires_at: datetime | None = None
    expires_in: Duration | None = None
    clear_expiry: bool = False
    rate_limit_per_hour: Limit | None = None
    burst: Limit | None = None
    allowed_ips: Networks | None = None
    metadata: Metadata | None = None


class RotateRequest(_Request):
    grace: Duration | None = Field(None, description="how long the old key keeps working (24h)")


# A key as the REST API returns it: ``KeyView``'s fields (the one list), under the name the
# OpenAPI document has always used. (No docstring: it would become the schema's description.)
class DisableRequest(_Request):
    reason: Annotated[Text, Field(max_length=500)] | None = None


class UserOut(UserView):
    """A user's disabled state (``POST /users/{email}/disable|enable``)."""

    @classmethod
    def of(cls, view: UserView) -> UserOut:
        return cls(**view.model_dump())


class KeyOut(KeyView):
    @classmethod
    def of(cls, view: KeyView) -> KeyOut:
        return cls.model_validate(view.model_dump())


class KeyCreated(BaseModel):
    token: str = Field(description="the whole key: shown once, store it now")
    key: KeyOut


class KeyRotated(BaseModel):
    token: str = Field(description="the new key: shown once, store it now")
    key: KeyOut
    old_key: KeyOut = Field(description="the previous key, with its grace-period expiry")

    @classmethod
    def of(cls, rotation: Rotation) -> KeyRotated:
        return cls(
            token=rotation.token.token, key=KeyOut.of(rotation.new), old_key=KeyOut.of(rotation.old)
        )


class KeyPage(BaseModel):
    items: list[KeyOut]
    limit: int
    offset: int
    next_offset: int | None = Field(description="pass as offset for the next page; null: last")


class UsageGroupOut(BaseModel):
    """One group of a usage report: an endpoint ("GET /route"), a status class, or the total."""

    label: str
    requests: int
    errors: int
    error_rate: float
    latency_avg_ms: float | None
    latency_max_ms: float
    p50_ms: float | None
    p95_ms: float | None


class UsagePointOut(BaseModel):
    start: datetime
    requests: int


class UsageOut(BaseModel):
    """The figures of ``hokusai auth usage KEY_ID --json``."""

    key_id: str
    since: datetime
    interval_seconds: int
    total: UsageGroupOut | None
    endpoints: list[UsageGroupOut]
    status_classes: list[UsageGroupOut]
    series: list[UsagePointOut]
    denials: dict[str, int] = Field(
        default_factory=dict, description="refused checks by reason (authentication events)"
    )

    @classmethod
    def of(cls, report: KeyReport) -> UsageOut:
        return cls.model_validate(report.to_json())


# An audit row as the REST API returns it: ``AuditEntry``'s fields, named for OpenAPI.
class AuditEntryOut(AuditEntry):
    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls.model_validate(entry.model_dump())


class AuditPage(BaseModel):
    items: list[AuditEntryOut]


class WhoAmI(BaseModel):
    user_email: str
    user_id: int
    key_id: str
    env: str
    scopes: list[str]
    rate_limit_per_hour: int | None
    burst: int | None
    allowed_ips: list[str]
    expires_at: datetime | None


class Health(BaseModel):
    status: Literal["ok"]


class ErrorBody(BaseModel):
    """The gateway's one error shape (also Envoy's and the Check server's denials)."""

    error: str = Field(examples=["insufficient_scope"])
    message: str
    docs: str


# An authentication event as the REST API returns it: ``EventView``'s fields.
class EventOut(EventView):
    @classmethod
    def of(cls, event: EventView) -> EventOut:
        return cls.model_validate(event.model_dump())


class EventPage(BaseModel):
    items: list[EventOut]
    limit: int
    offset: int
    next_offset: int | None = Field(description="pass as offset for the next page; null: last")


# One expiry-warning delivery as the REST API returns it.
class DeliveryOut(DeliveryView):
    @classmethod
    def of(cls, delivery: DeliveryView) -> DeliveryOut:
        return cls.model_validate(delivery.model_dump())


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]


class PolicyOut(BaseModel):
    """The central key policy; lifetimes in seconds (null: no rule)."""

    max_lifetime: float | None
    max_lifetime_scope: dict[str, float]
    max_lifetime_env: dict[str, float]
    inactivity_expiry: float | None
    require_expiry_live: bool
    version: int


class PolicyUpdateIn(_Request):
    """Rules to change; omitted fields stay. Durations such as ``90d``, or ``off`` to remove."""

    max_lifetime: Duration | None = None
    max_lifetime_scope: Annotated[dict[Text, Duration], Field(max_length=16)] = Field(
        default_factory=dict, examples=[{"admin": "7d"}]
    )
    max_lifetime_env: Annotated[dict[Text, Duration], Field(max_length=2)] = Field(
        default_factory=dict, examples=[{"live": "30d"}]
    )
    inactivity_expiry: Duration | None = None
    require_expiry_live: bool | None = None
