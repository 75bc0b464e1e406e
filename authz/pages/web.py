"""What the keys API's handlers read from a request, once — the trusted client address (phase 6's
rule, ``authz.check.network``), the browser's signals (``authz.sessions.browser``), the session
cookie — and the one answer for a refused credential in this process (the reason table's status,
body and headers, as the Check's transports send them)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from authz.check.network import client_address
from authz.check.reasons import OUTCOMES, Reason, denial_body, denial_headers
from authz.sessions import cookie
from authz.sessions.browser import BrowserSignals


def client_of(request: Request, trusted_hops: int) -> str:
    """Behind Envoy, from X-Forwarded-For (``trusted_hops``); direct, the TCP peer."""
    peer = request.client.host if request.client else ""
    return client_address(request.headers.get("x-forwarded-for"), peer, trusted_hops)


def signals_of(request: Request) -> BrowserSignals | None:
    return BrowserSignals.read(request.headers.get, request.headers.get("host"))


def session_of(request: Request) -> str | None:
    """The well-formed session id the request carries, if exactly one."""
    found = cookie.session_id(request.headers.get("cookie"))
    return found if isinstance(found, str) else None


def denial_response(reason: Reason, docs_base: str) -> JSONResponse:
    """The gateway's answer for a refused credential: status, the JSON body, the denial headers."""
    response = JSONResponse(status_code=OUTCOMES[reason].status, content=None)
    response.body = denial_body(reason, docs_base)
    response.headers["content-length"] = str(len(response.body))
    for name, value in denial_headers(reason):
        response.headers[name] = value
    return response
