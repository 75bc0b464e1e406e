"""``create_app(settings)``: the keys REST API as a FastAPI application.

Nothing is built at import time: the pipeline and pools are made in the lifespan, from the
settings passed in. Every error — a refused key, a service failure, a malformed request, an
unknown route, a bug — answers in the gateway's one JSON shape ``{"error", "error_code",
"message", "docs"}`` (``authz.check.reasons.error_body``), never with a stack trace or an echo of
the input.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from authz.api import routes
from authz.api.auth import Denied, denial_response
from authz.api.runtime import Runtime
from authz.check.reasons import RETRY_AFTER_UNAVAILABLE, docs_link, error_body
from authz.errors import HokusaiError
from authz.pages import routes as pages
from authz.settings import Settings
from authz.storage.db import ConnectionFactory
from authz.storage.store import KeyStore

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "missing_key",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
}


def error_response(status: int, code: str, message: str, docs_base: str) -> Response:
    body = error_body(code, status, message, docs_link(code, docs_base))
    response = Response(body, status_code=status, media_type="application/json")
    if status == 503:
        response.headers["retry-after"] = RETRY_AFTER_UNAVAILABLE
    return response


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str]:
    """The first problem as ``field: message`` (Pydantic's message, never the input)."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return 400, "bad_request", "the request body is not valid JSON"
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    text = str(first.get("msg", "invalid request"))[:200]
    return 422, "invalid_input", f"{where}: {text}" if where else text


def install_error_handlers(app: FastAPI, docs_base: str) -> None:
    async def denied(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Denied)
        return denial_response(exc.reason, docs_base)

    async def service_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HokusaiError)
        return error_response(exc.http_status, exc.code, exc.message, docs_base)

    async def invalid(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(*_validation_message(exc), docs_base)

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        response = error_response(exc.status_code, code, message, docs_base)
        response.headers.update(exc.headers or {})
        return response

    async def crashed(_request: Request, exc: Exception) -> Response:
        log.error("keys API request failed", extra={"error": type(exc).__name__})
        return error_response(500, "internal", "the request failed; it has been logged", docs_base)

    app.add_exception_handler(Denied, denied)
    app.add_exception_handler(HokusaiError, service_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, crashed)


def create_app(
    settings: Settings, *, connect: ConnectionFactory | None = None, store: KeyStore | None = None
) -> FastAPI:
    """The application; ``connect``/``store`` replace the Postgres pool and key store (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.build(settings, connect, store)
        await runtime.start()
        app.state.runtime = runtime
        app.state.pages = runtime.pages
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Hokusai keys API",
        version="1",
        description="Manage Hokusai Gateway API keys. Authenticate with your own key: "
        "`Authorization: Bearer hk_live_…` or `X-API-Key`.",
        openapi_url=f"{routes.PREFIX}/openapi.json",
        docs_url=f"{routes.PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    install_error_handlers(app, settings.docs_base_url)
    app.include_router(routes.router)
    app.include_router(routes.health_router)
    app.include_router(pages.router)
    return app
