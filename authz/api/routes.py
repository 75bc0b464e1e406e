"""The endpoints under ``/api/v1/auth``: parse, call the key service, shape the answer.

Endpoints that touch the database are plain ``def``: FastAPI runs them in its thread pool, where
the synchronous service may block. Every rule is key management's (``authz.management``): these
functions only decide which rule applies to which operation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from authz.api.auth import API_KEY_HEADER, BEARER, identify
from authz.api.models import (
    AuditEntryOut,
    AuditPage,
    DeliveryOut,
    DeliveryPage,
    DisableRequest,
    ErrorBody,
    EventOut,
    EventPage,
    Health,
    KeyCreate,
    KeyCreated,
    KeyOut,
    KeyPage,
    KeyRotated,
    KeyUpdate,
    PolicyOut,
    PolicyUpdateIn,
    RotateRequest,
    Text,
    UsageOut,
    UserOut,
    WhoAmI,
)
from authz.api.runtime import Runtime
from authz.keys import scopes
from authz.keys.durations import parse_period, parse_since
from authz.management.delegation import (
    Principal,
    check_change,
    check_delegation,
    owner_for,
    require_manager,
    require_scope,
)
from authz.management.policy import PolicyUpdate
from authz.management.service import KeyService
from authz.management.views import KeyChanges

PREFIX = "/api/v1/auth"
NO_STORE = "no-store"
_ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 422, 503)}

router = APIRouter(prefix=PREFIX, responses=_ERRORS)  # type: ignore[arg-type]


def runtime(request: Request) -> Runtime:
    current: Runtime = request.app.state.runtime
    return current


async def caller(
    request: Request,
    _bearer: Annotated[object, Depends(BEARER)],
    _header: Annotated[object, Depends(API_KEY_HEADER)],
) -> Principal:
    """The verified calling key (the two unused parameters document the schemes in OpenAPI)."""
    current = runtime(request)
    return await identify(current.checker, request, current.settings.trusted_hops)


def key_service(request: Request, principal: Annotated[Principal, Depends(caller)]) -> KeyService:
    """The service acting as the calling key: audit rows name ``api:<key id>``."""
    current = runtime(request)
    return KeyService(current.connect, current.settings, principal.actor)


Caller = Annotated[Principal, Depends(caller)]
Service = Annotated[KeyService, Depends(key_service)]


# --- keys ---------------------------------------------------------------------------------------


@router.post("/keys", status_code=201, response_model=KeyCreated)
def create_key(
    body: KeyCreate, principal: Caller, service: Service, response: Response
) -> KeyCreated:
    """Create a key (for the caller's user; admin keys may name another). Shown once."""
    require_manager(principal)
    owner = owner_for(principal, service.get_key(principal.key_id).user_email, body.user)
    check_delegation(principal, body.scopes, body.allowed_ips)
    view, new = service.create_key(
        user_email=owner,
        name=body.name,
        env=body.env,
        scopes=body.scopes,
        expires_at=body.expires_at,
        expires_in=None if body.expires_in is None else parse_period(body.expires_in),
        rate_limit_per_hour=body.rate_limit_per_hour,
        burst=body.burst,
        allowed_ips=body.allowed_ips,
        metadata=body.metadata,
    )
    response.headers["cache-control"] = NO_STORE
    return KeyCreated(token=new.token, key=KeyOut.of(view))


@router.get("/keys", response_model=KeyPage)
def list_keys(
    principal: Caller,
    service: Service,
    *,
    user: Annotated[Text | None, Query(max_length=320)] = None,
    include_inactive: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    expiring: Annotated[Text | None, Query(max_length=32, examples=["14d"])] = None,
) -> KeyPage:
    """The caller's keys, newest first (admin keys: ``?user=`` any user's); ``?expiring=14d``:
    usable keys that expire within 14 days, soonest first."""
    require_manager(principal)
    owner = owner_for(principal, service.get_key(principal.key_id).user_email, user)
    views = service.list_keys(
        user_email=owner,
        include_inactive=include_inactive,
        limit=limit + 1,
        offset=offset,
        expiring=None if expiring is None else parse_period(expiring),
    )
    more = len(views) > limit
    return KeyPage(
        items=[KeyOut.of(v) for v in views[:limit]],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if more else None,
    )


@router.get("/keys/{key_id}", response_model=KeyOut)
def get_key(key_id: str, principal: Caller, service: Service) -> KeyOut:
    view = service.get_key(key_id)
    require_manager(principal, view.user_id)
    return KeyOut.of(view)


@router.patch("/keys/{key_id}", response_model=KeyOut)
def update_key(key_id: str, body: KeyUpdate, principal: Caller, service: Service) -> KeyOut:
    """Change name, scopes, expiry, limits, networks or metadata; lists replace."""
    check_change(principal, service.get_key(key_id), body.scopes, body.allowed_ips)
    changes = KeyChanges(
        name=body.name,
        scopes=body.scopes,
        expires_at=body.expires_at,
        expires_in=None if body.expires_in is None else parse_period(body.expires_in),
        clear_expiry=body.clear_expiry,
        rate_limit_per_hour=body.rate_limit_per_hour,
        burst=body.burst,
        allowed_ips=body.allowed_ips,
        metadata=body.metadata,
    )
    return KeyOut.of(service.update_key(key_id, changes))


@router.delete("/keys/{key_id}", status_code=204, response_class=Response)
def revoke_key(key_id: str, principal: Caller, service: Service) -> Response:
    """Revoke now; revoking a revoked key is a no-op (still 204)."""
    require_manager(principal, service.get_key(key_id).user_id)
    service.revoke_key(key_id, reason=f"revoked over the API by {principal.actor}")
    return Response(status_code=204)


@router.post("/keys/{key_id}/rotate", response_model=KeyRotated)
def rotate_key(
    key_id: str,
    principal: Caller,
    service: Service,
    response: Response,
    body: RotateRequest | None = None,
) -> KeyRotated:
    """A new key with the same settings; the old one works for the grace period. Shown once."""
    check_change(principal, service.get_key(key_id), None, None)
    grace = None if body is None or body.grace is None else parse_period(body.grace)
    rotation = service.rotate_key(key_id, grace)
    response.headers["cache-control"] = NO_STORE
    return KeyRotated.of(rotation)


@router.get("/keys/{key_id}/usage", response_model=UsageOut)
def key_usage(
    key_id: str,
    principal: Caller,
    service: Service,
    since: Annotated[Text, Query(max_length=32)] = "24h",
) -> UsageOut:
    """Requests, errors, status classes, latency and routes over the last ``since``."""
    require_manager(principal, service.get_key(key_id).user_id)
    return UsageOut.of(service.key_usage(key_id, parse_period(since)))


# --- authentication events, expiry warnings, central policy -------------------------------

EventLimit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Since = Annotated[Text | None, Query(max_length=40, examples=["24h"])]
ReasonFilter = Annotated[Text | None, Query(max_length=64, examples=["revoked"])]


def _event_page(
    service: KeyService, since: str | None, limit: int, offset: int, **filters: str | None
) -> EventPage:
    """One page of events (one more is asked for, to know whether another page follows)."""
    found = service.events(**filters, since=_since(since), limit=limit + 1, offset=offset)
    return EventPage(
        items=[EventOut.of(e) for e in found[:limit]],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if len(found) > limit else None,
    )


def _since(since: str | None) -> datetime | None:
    return None if since is None else parse_since(since, datetime.now(UTC))


@router.get("/keys/{key_id}/events", response_model=EventPage)
def key_events(
    key_id: str,
    principal: Caller,
    service: Service,
    *,
    reason: ReasonFilter = None,
    since: Since = None,
    limit: EventLimit = 100,
    offset: Offset = 0,
) -> EventPage:
    """Refused checks with this key, newest first (owner with keys:manage, or admin)."""
    require_manager(principal, service.get_key(key_id).user_id)
    return _event_page(service, since, limit, offset, key_id=key_id, reason=reason)


@router.get("/events", response_model=EventPage)
def events(
    principal: Caller,
    service: Service,
    *,
    key: Annotated[Text | None, Query(max_length=64)] = None,
    user: Annotated[Text | None, Query(max_length=320)] = None,
    reason: ReasonFilter = None,
    since: Since = None,
    limit: EventLimit = 100,
    offset: Offset = 0,
) -> EventPage:
    """Every authentication event, newest first, filtered. Admin keys only."""
    require_scope(principal, scopes.ADMIN)
    return _event_page(service, since, limit, offset, key_id=key, user_email=user, reason=reason)


@router.get("/webhook-deliveries", response_model=DeliveryPage)
def webhook_deliveries(
    principal: Caller,
    service: Service,
    *,
    key: Annotated[Text | None, Query(max_length=64)] = None,
    limit: EventLimit = 100,
) -> DeliveryPage:
    """The expiry-warning delivery log, newest first. Admin keys only."""
    require_scope(principal, scopes.ADMIN)
    return DeliveryPage(items=[DeliveryOut.of(d) for d in service.deliveries(key, limit)])


@router.get("/policy", response_model=PolicyOut)
def policy(principal: Caller, service: Service) -> PolicyOut:
    """The central key policy (any key with keys:manage may read it)."""
    require_manager(principal)
    return PolicyOut.model_validate(service.policy().to_json())


@router.put("/policy", response_model=PolicyOut)
def set_policy(body: PolicyUpdateIn, principal: Caller, service: Service) -> PolicyOut:
    """Change rules (omitted fields stay); audited, and every gateway holds keys to it within a
    second. Admin keys only."""
    require_scope(principal, scopes.ADMIN)
    update = PolicyUpdate(
        max_lifetime=body.max_lifetime,
        max_lifetime_scope=body.max_lifetime_scope,
        max_lifetime_env=body.max_lifetime_env,
        inactivity_expiry=body.inactivity_expiry,
        require_expiry_live=body.require_expiry_live,
    )
    return PolicyOut.model_validate(service.set_policy(update).to_json())


# --- caller, audit, health -------------------------------------------------------------------


@router.get("/whoami", response_model=WhoAmI)
def whoami(principal: Caller, service: Service) -> WhoAmI:
    """The calling key: its user, id, scopes, limits and expiry (any valid key may ask)."""
    me = service.get_key(principal.key_id)
    return WhoAmI(
        user_email=me.user_email,
        user_id=me.user_id,
        key_id=me.key_id,
        env=me.env,
        scopes=list(me.scopes),
        rate_limit_per_hour=me.rate_limit_per_hour,
        burst=me.burst,
        allowed_ips=list(me.allowed_ips),
        expires_at=me.expires_at,
    )


@router.get("/audit", response_model=AuditPage)
def audit(
    principal: Caller,
    service: Service,
    *,
    key: Annotated[Text | None, Query(max_length=64)] = None,
    actor: Annotated[Text | None, Query(max_length=200)] = None,
    action: Annotated[Text | None, Query(max_length=64)] = None,
    since: Annotated[Text | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Audit rows, oldest first (the newest ``limit`` that match). Admin keys only."""
    require_scope(principal, scopes.ADMIN)
    entries = service.audit_entries(
        key_id=key,
        actor=actor,
        action=action,
        since=_since(since),
        limit=limit,
    )
    return AuditPage(items=[AuditEntryOut.of(e) for e in entries])


# --- users (admin) ------------------------------------------------------------------------------


@router.post("/users/{email}/disable", response_model=UserOut)
def disable_user(
    email: Annotated[Text, Path(max_length=320)],
    principal: Caller,
    service: Service,
    body: DisableRequest | None = None,
) -> UserOut:
    """Refuse every key and browser session of a user, everywhere, within a second. Admin only."""
    require_scope(principal, scopes.ADMIN)
    return UserOut.of(service.disable_user(email, None if body is None else body.reason))


@router.post("/users/{email}/enable", response_model=UserOut)
def enable_user(
    email: Annotated[Text, Path(max_length=320)], principal: Caller, service: Service
) -> UserOut:
    """Let a disabled user's keys work again (revoked or expired keys stay so). Admin only."""
    require_scope(principal, scopes.ADMIN)
    return UserOut.of(service.enable_user(email))


health_router = APIRouter(prefix=PREFIX)


@health_router.get("/health", response_model=Health)
def health() -> Health:
    """Liveness for ``hokusai gateway status`` and load balancers; no key needed."""
    return Health(status="ok")
