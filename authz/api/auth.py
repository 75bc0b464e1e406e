"""Who is calling: the caller's own API key, validated by the Check server's pipeline.

The key comes from ``Authorization: Bearer`` or ``X-API-Key`` — never the query string (Envoy
strips ``api_key`` from every route, and a key in a URL ends up in logs). Phases 1–6 of
``authz.check.checker.Checker`` run unchanged (``check_safely``: an unexpected failure denies,
fail closed); phase 7 (route scope) is replaced by the per-operation rules of
``authz.management.delegation`` (``keys:manage`` / ``admin``). A denial answers exactly as the
gateway does: the reason's status, the one JSON body and the reason table's headers
(``denial_headers``: no-store, the ``WWW-Authenticate`` challenge, ``retry-after`` on 503).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.security import APIKeyHeader, HTTPBearer

from authz.check.checker import Checker, CheckInput, Decision
from authz.check.credentials import CredentialSources
from authz.check.reasons import Reason
from authz.management.delegation import Principal
from authz.pages.web import client_of, denial_response
from authz.transports import wire

__all__ = ["API_KEY_HEADER", "BEARER", "Denied", "denial_response", "identify", "principal_of"]

# Declared for the OpenAPI document (so clients and the interactive docs know how to send a
# key); the credential itself is read by ``authenticate`` below.
BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer hk_live_…")
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False)


class Denied(Exception):
    """The caller's key was refused; carries the check's reason (never the key)."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.value)
        self.reason = reason


def sources_of(request: Request) -> CredentialSources:
    headers = request.headers
    authorization = headers.getlist(wire.AUTHORIZATION_HEADER)
    api_key = headers.getlist(wire.API_KEY_HEADER)
    return CredentialSources(
        authorization=authorization[0] if authorization else None,
        api_key_header=api_key[0] if api_key else None,
        query="",  # never from the URL
        repeated=len(authorization) > 1 or len(api_key) > 1,
    )


async def identify(checker: Checker, request: Request, trusted_hops: int) -> Principal:
    """The verified calling key, or ``Denied``; an unexpected failure denies (fail closed)."""
    check = CheckInput(
        request.method,
        request.url.path,
        sources_of(request),
        client_of(request, trusted_hops),
        any_scope=True,
    )
    return principal_of(await checker.check_safely(check))


def principal_of(decision: Decision) -> Principal:
    if not decision.allowed or decision.record is None:
        raise Denied(decision.reason if not decision.allowed else Reason.UNAVAILABLE)
    record = decision.record
    return Principal(
        key_id=record.key_id,
        user_id=record.user_id,
        scopes=record.scopes,
        networks=tuple(str(n) for n in record.networks),
    )
