"""Sessions in a real browser through the real gateway: a revoked key or a disabled user sends the
next page load to the sign-in page within a second (from another process: the CLI); every sign-in
is a new id and an id the gateway did not issue is never accepted; sign-out ends the session (the
old cookie replayed → sign-in page); and the cookie never reaches an upstream."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest

from authz.sessions import cookie
from tests.e2e.conftest import Gateway
from tests.e2e.ui import (
    UI_FETCH,
    Seed,
    open_signed_in,
    put_session,
    session_of,
    sign_in,
    signed_in_session,
    ui_page,
    until,
)
from tests.support.browser import require_chromium
from tests.support.cli import run_hokusai

if TYPE_CHECKING:
    from playwright.sync_api import Page

UI_ECHO = "/api/mlflow/ajax-api/2.0/hokusai-echo/who"


@pytest.fixture(scope="module", autouse=True)
def chromium() -> None:
    require_chromium()


def hokusai(gateway: Gateway, *args: str) -> None:
    """The CLI in another process, as an operator runs it."""
    done = run_hokusai(*args, HOKUSAI_DATA_DIR=str(gateway.data_dir))
    assert done.returncode == 0, done.stderr


def fresh_key(gateway: Gateway, scopes: tuple[str, ...] = ("mlflow:read",)) -> tuple[str, str, str]:
    """(email, key id, token) of a new user's key."""
    email = f"ui-{uuid.uuid4().hex[:8]}@example.com"
    view, new = gateway.service("test:ui").create_key(user_email=email, name="ui", scopes=scopes)
    return email, view.key_id, new.token


def reason_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["reason"][0]


def reload_lands_on_sign_in(page: Page, gateway: Gateway) -> bool:
    """A real reload: the UI is a hash-routed single page, so only a reload asks for a page."""
    page.reload(wait_until="commit")
    return page.url.startswith(f"{gateway.url}/login")


@pytest.mark.parametrize(
    ("command", "reason"), [("revoke-key", "revoked"), ("disable-user", "user_disabled")]
)
def test_the_next_page_load_after_a_revocation_lands_on_sign_in_within_a_second(
    gateways: dict[str, Gateway], ui_seed: Seed, command: str, reason: str
) -> None:
    gateway = gateways["http"]
    email, key_id, token = fresh_key(gateway)
    with ui_page(gateway) as (page, _recorder):
        open_signed_in(page, gateway, token, ui_seed.run_fragment(), "run-0")
        hokusai(gateway, "auth", command, email if command == "disable-user" else key_id)
        took = until(lambda: reload_lands_on_sign_in(page, gateway), seconds=1.0)
        assert took <= 1.0
        assert reason_of(page.url) == reason
        assert page.url.endswith("#" + ui_seed.run_fragment())  # the way back is kept


def test_every_sign_in_is_a_new_id_and_a_planted_one_is_never_accepted(
    gateways: dict[str, Gateway],
) -> None:
    gateway = gateways["http"]
    _, _, token = fresh_key(gateway)
    planted = cookie.new_session_id()
    with ui_page(gateway) as (page, _recorder):
        put_session(page, gateway, planted)
        page.goto(f"{gateway.mlflow_uri}/", wait_until="load")
        assert reason_of(page.url) == "invalid_session"  # never accepted
        sign_in(page, token)
        first = session_of(page)
        assert first is not None and first["value"] != planted
        page.goto(f"{gateway.url}/login", wait_until="load")
        sign_in(page, token)
        second = session_of(page)
        assert second is not None and second["value"] not in (planted, first["value"])
        put_session(page, gateway, first["value"])
        page.goto(f"{gateway.mlflow_uri}/", wait_until="load")
        assert reason_of(page.url) == "session_expired"  # replaced by the second sign-in


def test_sign_out_ends_the_session_everywhere(gateways: dict[str, Gateway]) -> None:
    gateway = gateways["http"]
    _, _, token = fresh_key(gateway)
    with ui_page(gateway) as (page, _recorder):
        held = signed_in_session(page, gateway, token)
        page.goto(f"{gateway.url}/logout", wait_until="load")
        with page.expect_navigation():
            page.get_by_role("button", name="Sign out").click()
        assert page.url == f"{gateway.url}/login?reason=signed_out"
        assert page.get_by_text("You have signed out.").is_visible()
        assert session_of(page) is None  # the cookie is cleared
        put_session(page, gateway, held["value"])
        page.goto(f"{gateway.mlflow_uri}/", wait_until="load")
        assert reason_of(page.url) == "session_expired"
    other = gateways["grpc"]  # the other instance refuses it too
    fetched = other.get(
        "/api/mlflow/ajax-api/2.0/mlflow/experiments/search?max_results=1",
        headers={"cookie": f"{cookie.COOKIE_NAME}={held['value']}", **UI_FETCH},
    )
    assert fetched.status_code == 401 and fetched.json()["error"] == "session_expired"


def test_the_cookie_never_reaches_an_upstream(
    gateways: dict[str, Gateway], mlflow_server: object
) -> None:
    gateway = gateways["http"]
    _, key_id, token = fresh_key(gateway)
    with ui_page(gateway) as (page, _recorder):
        held = signed_in_session(page, gateway, token)
        before = len(gateway.echo.requests)
        status = page.evaluate(
            "async (url) => (await fetch(url, {credentials: 'same-origin'})).status", UI_ECHO
        )
        assert status == 200
    seen = gateway.echo.requests[before:]
    assert [r.path for r in seen] == [UI_ECHO]
    assert "cookie" not in seen[0].headers
    assert seen[0].headers["x-hokusai-key-id"] == key_id  # the session's identity, not the cookie
    assert held["value"] not in repr(seen[0].headers)
    assert not [k for k in seen[0].headers if k in ("origin", "authorization", "x-api-key")] or (
        "origin" not in seen[0].headers
    )
    mlflow_log = Path(mlflow_server.log_path).read_text()  # type: ignore[attr-defined]
    assert held["value"] not in mlflow_log and cookie.COOKIE_NAME not in mlflow_log
