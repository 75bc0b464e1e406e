"""The gateway's own pages on the keys API process (in-process, real Postgres and Redis): sign-in
(same origin, rate limit, one message whatever a key's existence, audit, a fresh id each time),
sign-out, the security headers of every page, the docs with the denial bodies' anchors, and
MLflow's who-am-I answers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from authz.check.reasons import OUTCOMES, Reason, denial_body
from authz.keys import format as keys
from authz.management.service import KeyService
from authz.pages import signin
from authz.pages.render import CSP
from authz.sessions import cookie
from authz.settings import Settings
from authz.storage.db import connector
from authz.transports import wire
from tests.support.keys_api import Caller, api_settings, make_key

SAME_ORIGIN = {
    "sec-fetch-site": "same-origin",
    "sec-fetch-mode": "navigate",
    "sec-fetch-dest": "document",
}
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def settings(
    postgres_server_url: str, _template_database: str, redis_server: Any
) -> Iterator[Settings]:
    with api_settings(
        postgres_server_url,
        _template_database,
        redis_server,
        trusted_hops=1,  # the tests play several client addresses through X-Forwarded-For
        signin_rate_limit=600,
        signin_burst=5,
    ) as configured:
        yield configured


@pytest.fixture(scope="module")
def reader(settings: Settings) -> Caller:
    return make_key(settings, "reader@example.com", ("mlflow:read",))


counter = iter(range(10, 250))


def address() -> str:
    """A fresh client address per attempt group (the sign-in limit is per address)."""
    return f"198.51.100.{next(counter)}"


def sign_in(client: TestClient, key: str, *, client_ip: str | None = None, **form: str) -> Any:
    headers = {**SAME_ORIGIN, **FORM, "x-forwarded-for": f"{client_ip or address()}, 10.0.0.1"}
    headers.update({k: v for k, v in form.items() if k == "cookie"})
    body = {"key": key, **{k: v for k, v in form.items() if k != "cookie"}}
    return client.post("/login", data=body, headers=headers, follow_redirects=False)


def shown(text: str) -> str:
    """How a page shows ``text`` (autoescaped)."""
    return str(escape(text))


def assert_page_headers(response: Any, cache: str = "no-store") -> None:
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == cache


def test_the_sign_in_page(client: TestClient) -> None:
    page = client.get("/login?next=/api/mlflow/%3Fa%3D1&reason=session_expired")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert_page_headers(page)
    html = page.text
    assert shown(OUTCOMES[Reason.SESSION_EXPIRED].message) in html
    assert 'name="next" value="/api/mlflow/?a=1"' in html
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/_hokusai/static/login.js" defer>']
    assert "style=" not in html and "<style" not in html and "on" + "click" not in html
    for url in re.findall(r'(?:src|href|action)="([^"]+)"', html):
        assert url.startswith("/") and not url.startswith("//"), url  # our own origin only
    hostile = client.get("/login?reason=%3Cscript%3Ealert(1)%3C/script%3E&next=//evil.example")
    assert "alert(1)" not in hostile.text and "evil.example" not in hostile.text


def test_a_read_key_signs_in_and_returns_where_it_came_from(
    client: TestClient, reader: Caller, settings: Settings
) -> None:
    answer = sign_in(
        client, f"  {reader.token}\n", next="/api/mlflow/", fragment="/experiments/1/runs/abc"
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/api/mlflow/#/experiments/1/runs/abc"
    assert answer.headers["cache-control"] == "no-store"
    set_cookie = answer.headers["set-cookie"]
    session_id = cookie.session_id(set_cookie.split(";")[0])
    assert isinstance(session_id, str)
    assert set_cookie == cookie.set_cookie(session_id, int(settings.session_absolute_timeout))
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute(
            "SELECT key_id, idle_timeout, expires_at - created_at, user_agent FROM sessions "
            "WHERE id_hash = decode(%s, 'hex')",
            [cookie.id_hash(session_id)],
        ).fetchone()
    assert row is not None and row[0] == reader.key_id and row[3] == "testclient"
    assert row[1].total_seconds() == settings.session_idle_timeout
    assert abs(row[2].total_seconds() - settings.session_absolute_timeout) < 5


def test_every_sign_in_is_a_new_session_and_ends_the_old_one(
    client: TestClient, reader: Caller
) -> None:
    first = sign_in(client, reader.token).headers["set-cookie"].split(";")[0]
    again = sign_in(client, reader.token, cookie=first).headers["set-cookie"].split(";")[0]
    assert first != again
    pages = client.app.state.pages  # type: ignore[attr-defined]
    first_id, again_id = cookie.session_id(first), cookie.session_id(again)
    assert isinstance(first_id, str) and isinstance(again_id, str)
    assert client.portal.call(pages.live, again_id) and not client.portal.call(pages.live, first_id)  # type: ignore[union-attr]


def test_a_cross_site_sign_in_is_refused(client: TestClient, reader: Caller) -> None:
    for headers in ({"sec-fetch-site": "cross-site"}, {"origin": "https://evil.example"}, {}):
        answer = client.post(
            "/login",
            data={"key": reader.token},
            headers={**FORM, **headers},
            follow_redirects=False,
        )
        assert answer.status_code == 403 and "set-cookie" not in answer.headers
        assert shown(signin.CROSS_SITE_MESSAGE) in answer.text
    by_origin = client.post(
        "/login",
        data={"key": reader.token},
        headers={**FORM, "origin": "http://testserver", "host": "testserver"},
        follow_redirects=False,
    )
    assert by_origin.status_code == 403  # the gateway's origin is https://: plain http never is


def test_wrong_keys_read_alike_and_parsed_ones_are_audited(
    client: TestClient, reader: Caller, settings: Settings
) -> None:
    parsed = keys.parse(reader.token)
    assert parsed is not None
    attempts = {
        "unknown": keys.generate("live").token,
        "wrong secret": keys.generate("live", parsed.key_id).token,
        "malformed": reader.token[:-1] + ("A" if reader.token[-1] != "A" else "B"),
        "garbage": "hello",
        "test environment": keys.generate("test").token,
    }
    bodies = {}
    for name, key in attempts.items():
        answer = sign_in(client, key)
        assert answer.status_code == 401, name
        assert "set-cookie" not in answer.headers
        bodies[name] = re.sub(r'value="[^"]*"', "", answer.text)
    assert len(set(bodies.values())) == 1  # the same page, word for word
    assert shown(signin.NOT_ACCEPTED_MESSAGE) in bodies["unknown"]
    with psycopg.connect(settings.database_url) as conn:
        refused = conn.execute(
            "SELECT key_id, changes->>'reason' FROM audit_log"
            " WHERE action = 'session.signin_refused'"
        ).fetchall()
    assert (parsed.key_id, "invalid_secret") in refused
    assert (keys.parse(attempts["unknown"]).key_id, "unknown_key") in refused  # type: ignore[union-attr]


def test_what_a_key_that_cannot_read_is_told(client: TestClient, settings: Settings) -> None:
    manager = make_key(settings, "manager@example.com", ("keys:manage",))
    answer = sign_in(client, manager.token)
    assert answer.status_code == 403 and signin.NO_READ_MESSAGE in answer.text
    revoked = make_key(settings, "gone@example.com", ("mlflow:read",))
    KeyService(connector(settings.database_url), settings, "test:pages").revoke_key(revoked.key_id)
    answer = sign_in(client, revoked.token)
    assert answer.status_code == 401 and OUTCOMES[Reason.REVOKED].message in answer.text


def test_sign_ins_are_rate_limited_per_address(client: TestClient, reader: Caller) -> None:
    here, elsewhere = address(), address()
    statuses = [sign_in(client, "wrong", client_ip=here).status_code for _ in range(8)]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429] * 3
    limited = sign_in(client, reader.token, client_ip=here)  # even the right key waits
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "Too many sign-in attempts" in limited.text
    assert sign_in(client, reader.token, client_ip=elsewhere).status_code == 303


def test_a_cookie_the_gateway_did_not_issue_is_cleared(client: TestClient, reader: Caller) -> None:
    planted = f"{cookie.COOKIE_NAME}={cookie.new_session_id()}"
    page = client.get("/login", headers={"cookie": planted})
    assert page.headers["set-cookie"] == cookie.clear_cookie()
    live = sign_in(client, reader.token).headers["set-cookie"].split(";")[0]
    assert "set-cookie" not in client.get("/login", headers={"cookie": live}).headers


def test_sign_out_ends_the_session_and_clears_the_cookie(
    client: TestClient, reader: Caller
) -> None:
    live = sign_in(client, reader.token).headers["set-cookie"].split(";")[0]
    assert client.get("/logout").status_code == 200
    forged = client.post("/logout", headers={"cookie": live, "sec-fetch-site": "cross-site"})
    assert forged.status_code == 403
    pages = client.app.state.pages  # type: ignore[attr-defined]
    session_id = cookie.session_id(live)
    assert isinstance(session_id, str) and client.portal.call(pages.live, session_id)  # type: ignore[union-attr]
    out = client.post("/logout", headers={"cookie": live, **SAME_ORIGIN}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login?reason=signed_out"
    assert out.headers["set-cookie"] == cookie.clear_cookie()
    assert not client.portal.call(pages.live, session_id)  # type: ignore[union-attr]


def test_the_error_reference_has_every_denial_anchor(client: TestClient) -> None:
    page = client.get("/docs/errors")
    assert page.status_code == 200
    assert_page_headers(page, cache="no-cache")
    ids = set(re.findall(r'<h\d id="([^"]+)"', page.text))
    for reason in Reason:
        if reason is not Reason.ALLOWED:
            anchor = json.loads(denial_body(reason))["docs"].split("#")[1]
            assert anchor in ids, anchor
    links = re.findall(r'href="([^"]+)"', page.text)
    assert "/docs/authentication#errors" in links and not [h for h in links if h.endswith(".md")]
    assert "<script" not in page.text.split("</header>")[1]
    assert client.get("/docs/nope").status_code == 404
    assert client.get("/docs/..%2Fpyproject").status_code == 404
    assert client.get("/docs").status_code == 200 and client.get("/docs/readme").status_code == 200


def test_static_files_are_ours_only(client: TestClient) -> None:
    script = client.get("/_hokusai/static/login.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert_page_headers(script, cache="public, max-age=3600")
    assert client.get("/_hokusai/static/hokusai.css").headers["content-type"].startswith("text/css")
    for name in ("../render.py", ".hidden", "nope.js", "%2e%2e%2frender.py"):
        assert client.get(f"/_hokusai/static/{name}").status_code == 404, name


def test_mlflows_who_am_i_is_answered_from_the_identity(client: TestClient, reader: Caller) -> None:
    me = client.get("/api/v1/auth/whoami", headers=reader.headers).json()
    identity = {
        wire.USER_ID_HEADER: str(me["user_id"]),
        wire.SCOPES_HEADER: "mlflow:read,mlflow:write",
    }
    current, roles, permissions = (
        client.get(path, headers=identity) for path in wire.MLFLOW_ACCOUNT_PATHS
    )
    assert current.json() == {
        "user": {"id": me["user_id"], "username": "reader@example.com", "is_admin": False},
        "is_basic_auth": False,
    }
    assert roles.json() == {"roles": []}
    assert permissions.json()["permissions"][0]["permission"] == "EDIT"
    assert permissions.json()["is_admin"] is False
    for path in wire.MLFLOW_ACCOUNT_PATHS:
        refused = client.get(path)
        assert refused.status_code == 401 and refused.json()["error"] == "missing_key"
