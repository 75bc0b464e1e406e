"""The session as a value (authz/sessions/): the cookie, where a person returns after signing in
(hypothesis: never another origin), the browser-or-program decision, and when a session ends
(an injected clock)."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authz.sessions import browser, cookie
from authz.sessions.browser import BrowserSignals
from authz.sessions.record import SessionRecord, SessionState

GOOD_ID = cookie.new_session_id()
OTHER_ID = cookie.new_session_id()
NAME = cookie.COOKIE_NAME


# --- the cookie -------------------------------------------------------------------------------


def test_fresh_ids_are_43_url_safe_characters_and_never_repeat() -> None:
    ids = {cookie.new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == cookie.ID_LENGTH and cookie.session_id(f"{NAME}={i}") == i for i in ids)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("theme=dark", None),
        (f"{NAME}={GOOD_ID}", GOOD_ID),
        (f"a=1; {NAME}={GOOD_ID}; b=2", GOOD_ID),
        (f"a=1;{NAME}= {GOOD_ID} ", GOOD_ID),
        (f"x{NAME}={GOOD_ID}", None),  # another cookie whose name merely contains ours
        (f"{NAME}={GOOD_ID}; {NAME}={OTHER_ID}", cookie.CookieProblem.MULTIPLE),
        (f"{NAME}={GOOD_ID}, {NAME}={GOOD_ID}", cookie.CookieProblem.MULTIPLE),  # joined headers
        (f"{NAME}=short", cookie.CookieProblem.MALFORMED),
        (f"{NAME}={GOOD_ID}x", cookie.CookieProblem.MALFORMED),
        (f"{NAME}={GOOD_ID[:-1]}+", cookie.CookieProblem.MALFORMED),
        (f"{NAME}=", cookie.CookieProblem.MALFORMED),
    ],
)
def test_reading_the_session_cookie(header: str | None, expected: object) -> None:
    assert cookie.session_id(header) == expected


def test_cookie_attributes_are_exactly_as_designed() -> None:
    assert cookie.set_cookie(GOOD_ID, 86400) == (
        f"{NAME}={GOOD_ID}; Max-Age=86400; Path=/; Secure; HttpOnly; SameSite=Lax"
    )
    assert cookie.clear_cookie() == f"{NAME}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax"
    assert "Domain" not in cookie.set_cookie(GOOD_ID, 1)


def test_the_id_hash_is_sha256_hex_and_does_not_contain_the_id() -> None:
    digest = cookie.id_hash(GOOD_ID)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert digest == cookie.id_hash(GOOD_ID) != cookie.id_hash(OTHER_ID)
    assert GOOD_ID not in digest


# --- next and the fragment: never another origin -----------------------------------------------

BASE = "https://gateway.example:8443/login"


def _stays_home(location: str) -> bool:
    joined = urlsplit(urljoin(BASE, location))
    return (joined.scheme, joined.netloc) == ("https", "gateway.example:8443")


def _browser_safe(path: str) -> bool:
    """What a browser does with it: drops tabs/newlines, reads \\ as /; then one leading /."""
    cleaned = path.replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/")
    return cleaned.startswith("/") and not cleaned.startswith("//")


ATTACKS = [
    "//evil.example/",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "https://evil.example/",
    "javascript:alert(1)",
    "/%2F%2Fevil.example",
    "/%5Cevil.example",
    "/%09/evil.example",
    "%2F%2Fevil.example",
    " /api/mlflow/",
    "/api/mlflow/ x",
    "",
    "/" + "a" * 3000,
]


@pytest.mark.parametrize("raw", ATTACKS)
def test_next_never_leads_elsewhere(raw: str) -> None:
    assert browser.safe_next(raw) == browser.DEFAULT_NEXT


@pytest.mark.parametrize(
    "raw",
    ["/api/mlflow/", "/api/mlflow/?x=1", "/docs/errors", "/api/mlflow/static-files/a%20b.js"],
)
def test_same_origin_paths_are_kept(raw: str) -> None:
    assert browser.safe_next(raw) == raw


@given(st.text(max_size=80) | st.from_regex(r"[/\\%0-9A-Fa-f.:@a-z\t\n ]{0,20}", fullmatch=True))
def test_any_next_is_a_path_on_this_gateway(raw: str) -> None:
    result = browser.safe_next(raw)
    assert result in (raw, browser.DEFAULT_NEXT)
    assert _stays_home(result) and _browser_safe(result)
    assert all("!" <= ch <= "~" for ch in result)


@given(st.text(max_size=40), st.text(max_size=60))
def test_the_return_location_stays_on_this_gateway(next_path: str, fragment: str) -> None:
    location = browser.return_location(next_path, fragment)
    assert _stays_home(location) and _browser_safe(location)
    assert all("!" <= ch <= "~" for ch in location)  # nothing to split a header with
    assert location.count("#") <= 1


def test_the_fragment_comes_back() -> None:
    fragment = '#/compare-runs?runs=["a","b"]&experiments=["1"]'
    assert browser.return_location("/api/mlflow/", fragment) == (
        '/api/mlflow/#/compare-runs?runs=["a","b"]&experiments=["1"]'
    )
    assert browser.return_location("//evil", "#/x y") == browser.DEFAULT_NEXT


def test_signin_location_carries_next_and_reason() -> None:
    location = browser.signin_location("/api/mlflow/?x=1&y=2", "session_expired")
    path, _, query = location.partition("?")
    assert path == "/login"
    assert parse_qs(query) == {"next": ["/api/mlflow/?x=1&y=2"], "reason": ["session_expired"]}
    evil = parse_qs(browser.signin_location("//evil.example", "x").partition("?")[2])
    assert evil["next"] == [browser.DEFAULT_NEXT]


# --- browser or program ------------------------------------------------------------------------


def signals(**headers: str) -> BrowserSignals | None:
    names = {k.replace("_", "-"): v for k, v in headers.items()}
    return BrowserSignals.read(names.get, "gateway.example:8443")


@pytest.mark.parametrize(
    ("method", "headers", "navigation"),
    [
        ("GET", {"sec_fetch_dest": "document", "sec_fetch_mode": "navigate"}, True),
        ("HEAD", {"sec_fetch_dest": "document"}, True),
        ("GET", {"sec_fetch_mode": "navigate"}, True),  # no destination: the mode decides
        ("GET", {"sec_fetch_dest": "empty", "sec_fetch_mode": "cors"}, False),  # the UI's fetch
        ("GET", {"sec_fetch_dest": "script", "sec_fetch_mode": "no-cors"}, False),
        ("GET", {"sec_fetch_dest": "iframe", "sec_fetch_mode": "navigate"}, False),
        ("POST", {"sec_fetch_dest": "document", "sec_fetch_mode": "navigate"}, False),
        ("GET", {"cookie": "a=b"}, False),  # no Sec-Fetch-*: a program, whatever it accepts
        ("GET", {}, False),
    ],
)
def test_browser_or_program(method: str, headers: dict[str, str], navigation: bool) -> None:
    assert browser.is_navigation(method, signals(**headers)) is navigation


@pytest.mark.parametrize(
    ("headers", "same"),
    [
        ({"sec_fetch_site": "same-origin"}, True),
        ({"sec_fetch_site": "same-origin", "origin": "https://evil.example"}, True),
        ({"sec_fetch_site": "same-site"}, False),
        ({"sec_fetch_site": "cross-site", "origin": "https://gateway.example:8443"}, False),
        ({"sec_fetch_site": "none"}, False),
        ({"origin": "https://gateway.example:8443"}, True),  # no Sec-Fetch-Site: Origin decides
        ({"origin": "https://GATEWAY.example:8443"}, True),
        ({"origin": "http://gateway.example:8443"}, False),
        ({"origin": "https://gateway.example"}, False),
        ({"origin": "null"}, False),
        ({"cookie": "a=b"}, False),  # neither
    ],
)
def test_same_origin(headers: dict[str, str], same: bool) -> None:
    found = signals(**headers)
    assert found is not None and browser.same_origin(found) is same


def test_default_port_origins() -> None:
    found = BrowserSignals.read({"origin": "https://gw.example"}.get, "gw.example:443")
    assert found is not None and browser.same_origin(found)


def test_no_browser_header_reads_as_none() -> None:
    assert BrowserSignals.read({"accept": "text/html"}.get, "h") is None


# --- when a session ends ------------------------------------------------------------------------

NOW = 1_000_000.0
RECORD = SessionRecord.started(
    cookie.id_hash(GOOD_ID), "abcdefghijkl", 7, NOW - 100, idle=3600.0, lifetime=86400.0 + 100
)


def test_active_idle_and_ended() -> None:
    assert RECORD.state(NOW) is SessionState.ACTIVE
    assert RECORD.state(NOW + 3600 - 100) is SessionState.ACTIVE
    assert RECORD.state(NOW + 3601) is SessionState.IDLE
    assert RECORD.state(NOW + 3601, seen=NOW + 3000) is SessionState.ACTIVE  # seen here lately
    assert RECORD.state(NOW + 3601, seen=NOW - 5000) is SessionState.IDLE  # the later one counts
    assert RECORD.state(NOW + 86400) is SessionState.ENDED  # absolute, however busy
    assert RECORD.state(NOW + 86400, seen=NOW + 86399) is SessionState.ENDED
    revoked = dataclasses.replace(RECORD, revoked_at=NOW - 1)
    assert revoked.state(NOW) is SessionState.ENDED
    assert RECORD.ended(NOW).state(NOW) is SessionState.ENDED


def test_the_record_travels_through_redis_unchanged() -> None:
    oidc = dataclasses.replace(RECORD, kind="oidc", key_id=None, scopes=frozenset({"mlflow:read"}))
    for record in (RECORD, oidc):
        assert SessionRecord.from_json(record.to_json()) == record
    assert GOOD_ID.encode() not in RECORD.to_json()
