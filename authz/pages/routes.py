"""The pages' routes on the keys API process (Envoy sends them here, ext_authz off — except the
MLflow account answers, which need the identity authz adds):

* ``GET /login`` (the form; ``?reason=`` says why the person is here; a cookie that is not a live
  session is cleared), ``POST /login`` (``signin.py``);
* ``GET /logout`` (one button), ``POST /logout`` (same-origin: the session ends everywhere, the
  cookie is cleared, back to the sign-in page);
* ``GET /docs/<page>`` and ``/docs/images/<file>`` (``docs.py``), ``/_hokusai/static/<file>``;
* MLflow's ``users/current``, ``users/roles/list``, ``users/current/permissions``
  (``account.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from markupsafe import Markup
from starlette.responses import JSONResponse, RedirectResponse, Response

from authz.check.checker import Checker
from authz.check.reasons import OUTCOMES, Reason
from authz.check.sessions import SessionCredential
from authz.management.sessions import SessionService
from authz.pages import account, docs
from authz.pages.render import STATIC, STATIC_PREFIX, file_response, page, page_headers
from authz.pages.signin import MAX_KEY, Attempt, SignIn
from authz.pages.web import client_of, denial_response, session_of, signals_of
from authz.sessions import cookie
from authz.sessions.browser import SIGNIN_PATH, safe_fragment, safe_next, same_origin
from authz.sessions.record import SessionRecord
from authz.settings import Settings
from authz.transports import wire

LOGOUT_PATH = wire.SIGNOUT_PATH
MAX_FORM_BYTES = 4096
EMAIL_TTL = 60.0  # seconds a user's email is remembered for MLflow's users/current


@dataclass
class Pages:
    """What the pages need, built by the keys API's runtime."""

    settings: Settings
    checker: Checker
    signin: SignIn
    sessions: SessionService
    user_email: Callable[[int], str]  # blocking (the database): called in a thread
    _emails: dict[int, tuple[float, str]] = field(default_factory=dict)

    async def live(self, session_id: str) -> bool:
        """Whether ``session_id`` names a session that still works (the Check's own lookup)."""
        assert self.checker.sessions is not None
        found = await self.checker.sessions.get(SessionCredential(cookie.id_hash(session_id)))
        return isinstance(found, SessionRecord)

    async def email(self, user_id: int) -> str:
        cached = self._emails.get(user_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        email = await asyncio.to_thread(self.user_email, user_id)
        self._emails[user_id] = (time.monotonic() + EMAIL_TTL, email)
        return email


router = APIRouter(include_in_schema=False)


def pages_of(request: Request) -> Pages:
    found: Pages = request.app.state.pages
    return found


def _duration(seconds: float) -> str:
    hours = seconds / 3600
    if hours >= 48 and hours % 24 == 0:
        return f"{int(hours // 24)} days"
    if hours >= 1 and hours == int(hours):
        return f"{int(hours)} hour{'s' if hours != 1 else ''}"
    return f"{int(seconds // 60)} minutes"


NOTICES: dict[str, tuple[str, str]] = {
    "signed_out": ("info", "You have signed out."),
    "missing_key": ("info", "Sign in with your API key to use MLflow."),
    Reason.INVALID_SESSION.value: ("info", "Your session has ended: sign in again."),
    Reason.SESSION_EXPIRED.value: ("info", OUTCOMES[Reason.SESSION_EXPIRED].message),
    **{
        reason.value: ("error", OUTCOMES[reason].message)
        for reason in (Reason.REVOKED, Reason.EXPIRED, Reason.USER_DISABLED)
    },
}


def _login_page(
    pages: Pages,
    *,
    next_path: str | None,
    fragment: str = "",
    notice: tuple[str, str] | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    settings = pages.settings
    return page(
        "login.html",
        status=status,
        headers=headers,
        title="Sign in",
        notice=None if notice is None else {"kind": notice[0], "text": notice[1]},
        next=safe_next(next_path),
        fragment=safe_fragment(fragment),
        max_key=MAX_KEY,
        idle=_duration(settings.session_idle_timeout),
        absolute=_duration(settings.session_absolute_timeout),
    )


@router.get(SIGNIN_PATH)
async def login_form(
    request: Request, next: str | None = None, reason: str | None = None
) -> Response:
    pages = pages_of(request)
    headers = {}
    presented = request.headers.get("cookie")
    if presented and cookie.COOKIE_NAME in presented:
        old = session_of(request)
        if old is None or not await pages.live(old):
            headers["set-cookie"] = cookie.clear_cookie()  # never carried into a new sign-in
    return _login_page(pages, next_path=next, notice=NOTICES.get(reason or ""), headers=headers)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    return {name: values[0] for name, values in fields.items() if values}


@router.post(SIGNIN_PATH)
async def login(request: Request) -> Response:
    pages = pages_of(request)
    form = await _form(request)
    outcome = await pages.signin.attempt(
        Attempt(
            key=form.get("key", ""),
            next=form.get("next"),
            fragment=form.get("fragment"),
            client=client_of(request, pages.settings.trusted_hops),
            user_agent=request.headers.get("user-agent"),
            browser=signals_of(request),
            old_session=session_of(request),
        )
    )
    if outcome.location is not None and outcome.set_cookie is not None:
        response = RedirectResponse(outcome.location, status_code=303)
        response.headers["cache-control"] = "no-store"
        response.headers["set-cookie"] = outcome.set_cookie
        return response
    headers = {} if outcome.retry_after is None else {"retry-after": str(outcome.retry_after)}
    return _login_page(
        pages,
        next_path=form.get("next"),
        fragment=form.get("fragment", ""),
        notice=("error", outcome.message or ""),
        status=outcome.status,
        headers=headers,
    )


@router.get(LOGOUT_PATH)
async def logout_form(request: Request) -> Response:
    return page("logout.html", title="Sign out")


@router.post(LOGOUT_PATH)
async def logout(request: Request) -> Response:
    pages = pages_of(request)
    signals = signals_of(request)
    if signals is None or not same_origin(signals):
        return page("logout.html", status=403, title="Sign out")
    session_id = session_of(request)
    if session_id is not None:
        await pages.signin.end(session_id, client=client_of(request, pages.settings.trusted_hops))
    response = RedirectResponse(f"{SIGNIN_PATH}?reason=signed_out", status_code=303)
    response.headers["cache-control"] = "no-store"
    response.headers["set-cookie"] = cookie.clear_cookie()
    return response


# --- the documentation and our static files ------------------------------------------------------


@router.get("/docs")
@router.get("/docs/")
async def docs_index() -> Response:
    return _doc("index")


@router.get("/docs/{name}")
async def doc(name: str) -> Response:
    return _doc(name)


def _doc(name: str) -> Response:
    rendered = docs.render(name)
    if rendered is None:
        return page("doc.html", status=404, title="Not found", body="<h1>No such page</h1>")
    title, html = rendered
    return page("doc.html", cache="no-cache", title=title, body=Markup(html))  # noqa: S704 - rendered with raw HTML off


@router.get("/docs/images/{name}")
async def doc_image(name: str) -> Response:
    return file_response(docs.IMAGES, name) or Response(status_code=404, headers=page_headers())


@router.get(STATIC_PREFIX + "{name}")
async def static(name: str) -> Response:
    return file_response(STATIC, name) or Response(status_code=404, headers=page_headers())


# --- what MLflow's UI asks about the signed-in person ---------------------------------------------


def _identity(request: Request) -> tuple[int, frozenset[str]] | None:
    user = request.headers.get(wire.USER_ID_HEADER)
    if user is None or not user.isdigit():
        return None
    return int(user), account.held(request.headers.get(wire.SCOPES_HEADER))


def _refused(request: Request) -> Response:
    return denial_response(Reason.MISSING_KEY, pages_of(request).settings.docs_base_url)


@router.get(account.CURRENT_USER)
async def current_user(request: Request) -> Response:
    identity = _identity(request)
    if identity is None:
        return _refused(request)
    user_id, granted = identity
    email = await pages_of(request).email(user_id)
    return _json(account.current_user(user_id, email, granted))


@router.get(account.ROLES)
async def roles(request: Request) -> Response:
    return _refused(request) if _identity(request) is None else _json(account.roles())


@router.get(account.PERMISSIONS)
async def permissions(request: Request) -> Response:
    identity = _identity(request)
    return _refused(request) if identity is None else _json(account.permissions(identity[1]))


def _json(content: dict[str, Any]) -> JSONResponse:
    return JSONResponse(content, headers={"cache-control": "no-store"})
