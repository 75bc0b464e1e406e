"""Rendering our pages: one Jinja2 template per page (autoescaped), static files, and the one set
of security headers every page we serve carries.

``Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src
'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`` — no inline script or style,
nothing from another origin, never framed; ``X-Frame-Options: DENY`` for old browsers;
``Referrer-Policy: no-referrer``; ``X-Content-Type-Options: nosniff``; forms are ``no-store``.
HSTS is Envoy's (on every TLS response). The template environment is built on first use, not at
import time.
"""

from __future__ import annotations

import functools
import mimetypes
from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse, Response

from authz.transports import wire

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_PREFIX = wire.PAGES_STATIC_PREFIX
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def page_headers(*, cache: str = "no-store") -> dict[str, str]:
    """The headers of every page and file we serve (the one builder)."""
    return {
        "content-security-policy": CSP,
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "x-content-type-options": "nosniff",
        "cache-control": cache,
    }


@functools.cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def page(
    template: str,
    *,
    status: int = 200,
    cache: str = "no-store",
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    html = environment().get_template(template).render(**context)
    return HTMLResponse(
        html, status_code=status, headers={**page_headers(cache=cache), **(headers or {})}
    )


def file_response(folder: Path, name: str, cache: str = "public, max-age=3600") -> Response | None:
    """A file directly inside ``folder`` (no sub-paths, no dot-files); None when there is none."""
    if "/" in name or "\\" in name or name.startswith(".") or not name:
        return None
    path = folder / name
    if not path.is_file():
        return None
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if kind == "image/svg+xml" or kind.startswith("text/") or kind.endswith("javascript"):
        kind += "; charset=utf-8"
    return Response(path.read_bytes(), media_type=kind, headers=page_headers(cache=cache))
