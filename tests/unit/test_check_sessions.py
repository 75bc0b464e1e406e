"""The Check with a browser session as the credential (fakes only, an injected clock): the same
pipeline and decision table as a key, no I/O when warm, the key-beats-cookie rule, CSRF before any
I/O, idle and absolute timeouts, and the sign-in redirect for a browser's page load."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest

from authz.check.checker import Checker, CheckInput, CheckPolicy, Decision
from authz.check.credentials import CredentialSources
from authz.check.graphql import RequestBody
from authz.check.reasons import Reason
from authz.check.routes import GRAPHQL_PATH
from authz.check.sessions import SessionCheck
from authz.check.verify import SecretVerifier
from authz.keys import format as keys
from authz.keys.record import KeyRecord
from authz.sessions import cookie
from authz.sessions.browser import BrowserSignals
from authz.sessions.record import SessionRecord
from authz.storage.cache import LocalCache
from authz.storage.lastused import LastUsedRecorder
from authz.storage.lookup import RecordLookup
from authz.storage.store import MemoryKeyStore, SessionRecords
from tests.unit.test_check import make_record

UI = "/api/mlflow/"
SEARCH = "/api/mlflow/ajax-api/2.0/mlflow/experiments/search?max_results=1"
CREATE = "/api/mlflow/ajax-api/2.0/mlflow/experiments/create"
HOST = "gateway.example:8443"
ORIGIN = f"https://{HOST}"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Rig:
    checker: Checker
    store: MemoryKeyStore
    clock: Clock
    key: keys.NewKey
    session_id: str

    def session(self, **changes: object) -> None:
        record = self.store.sessions[cookie.id_hash(self.session_id)]
        self.store.sessions[record.id_hash] = dataclasses.replace(record, **changes)  # type: ignore[arg-type]

    def key_record(self, **changes: object) -> None:
        record = self.store.records[self.key.parsed.key_id]
        self.store.records[record.key_id] = dataclasses.replace(record, **changes)  # type: ignore[arg-type]


def session_record(session_id: str, key: KeyRecord, now: float) -> SessionRecord:
    """Signed in a minute ago; idle after an hour, over after a day."""
    started = now - 60
    return SessionRecord.started(
        cookie.id_hash(session_id),
        key.key_id,
        key.user_id,
        started,
        idle=3600.0,
        lifetime=86400.0 + 60,
    )


@pytest.fixture
def rig() -> Iterator[Rig]:
    wall = Clock(time.time())
    key = keys.generate("live")
    record = make_record(key)  # mlflow:read only
    session_id = cookie.new_session_id()
    store = MemoryKeyStore([record], [session_record(session_id, record, wall.now)])
    mono = Clock(1000.0)

    def local() -> LocalCache:  # type: ignore[type-arg]
        return LocalCache(ttl=10, negative_ttl=1, stale_window=300, size=100, clock=mono)

    sessions = SessionCheck(
        RecordLookup(local(), None, SessionRecords(store)),
        LastUsedRecorder(store.touch_sessions, 60.0, clock=wall),
        clock=wall,
    )
    checker = Checker(
        CheckPolicy(frozenset({"live"}), True),
        RecordLookup(local(), None, store),
        SecretVerifier(b"pepper", 1),
        clock=wall,
        sessions=sessions,
    )
    yield Rig(checker, store, wall, key, session_id)
    checker.verifier.close()


def browser_request(
    rig: Rig,
    path: str = SEARCH,
    method: str = "GET",
    *,
    session: str | None = None,
    authorization: str | None = None,
    body: RequestBody | None = None,
    **headers: str,
) -> CheckInput:
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    sent.setdefault("sec-fetch-site", "same-origin")
    sent.setdefault("sec-fetch-mode", "cors")
    sent.setdefault("sec-fetch-dest", "empty")
    sent["cookie"] = f"theme=dark; {cookie.COOKIE_NAME}={session or rig.session_id}"
    return CheckInput(
        method,
        path,
        CredentialSources(authorization, None, path.partition("?")[2]),
        "10.0.0.1",
        browser=None if authorization else BrowserSignals.read(sent.get, HOST),
        body=body,
    )


def with_signals(request: CheckInput, **changes: str | None) -> CheckInput:
    """The same request, its browser headers changed (``None`` removes one)."""
    assert request.browser is not None
    return request._replace(browser=request.browser._replace(**changes))


def decide(rig: Rig, request: CheckInput) -> Decision:
    return asyncio.run(rig.checker.check(request))


def test_a_session_is_a_credential_and_warm_checks_need_no_io(rig: Rig) -> None:
    request = browser_request(rig)
    assert rig.checker.check_now(request) is None  # cold: the session and its key
    allowed = decide(rig, request)
    assert allowed.allowed and allowed.record is not None
    assert allowed.key_id == rig.key.parsed.key_id
    fetches = rig.store.fetches
    for _ in range(5):
        warm = rig.checker.check_now(request)
        assert warm is not None and warm.allowed
    assert rig.store.fetches == fetches == 2  # one session, one key: then memory only
    assert rig.checker.verifier.bcrypt_runs == 0  # the session's hash is the proof


def test_an_unknown_or_malformed_session_is_refused(rig: Rig) -> None:
    unknown = decide(rig, browser_request(rig, session=cookie.new_session_id()))
    assert unknown.reason is Reason.INVALID_SESSION
    malformed = decide(rig, browser_request(rig, session="not-a-session"))
    assert malformed.reason is Reason.INVALID_SESSION
    doubled = with_signals(
        browser_request(rig), cookie=f"{cookie.COOKIE_NAME}={rig.session_id}; " * 2
    )
    assert decide(rig, doubled).reason is Reason.MULTIPLE_CREDENTIALS


def test_the_session_is_only_a_credential_on_browser_routes(rig: Rig) -> None:
    rest = browser_request(rig, "/api/mlflow/api/2.0/mlflow/experiments/search")
    assert decide(rig, rest).reason is Reason.MISSING_KEY
    assert decide(rig, browser_request(rig, "/echo/x")).reason is Reason.MISSING_KEY
    for path in (
        UI,
        "/api/mlflow/static-files/static/js/main.js",
        "/api/mlflow/get-artifact?path=a&run_uuid=b",
        "/api/mlflow/model-versions/get-artifact?name=m&version=1&path=MLmodel",
        "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/x",
    ):
        assert decide(rig, browser_request(rig, path)).allowed, path


def test_a_key_always_decides(rig: Rig) -> None:
    good = decide(rig, browser_request(rig, authorization=f"Bearer {rig.key.token}"))
    assert good.allowed
    wrong = keys.generate("live", rig.key.parsed.key_id).token
    bad = browser_request(rig, authorization=f"Bearer {wrong}")
    assert decide(rig, bad).reason is Reason.INVALID_SECRET  # the good cookie does not help


def test_the_session_has_its_keys_scopes_never_more(rig: Rig) -> None:
    write = browser_request(rig, CREATE, "POST", origin=ORIGIN)
    assert decide(rig, write).reason is Reason.INSUFFICIENT_SCOPE
    query = RequestBody("application/json", json.dumps({"query": "{ a }"}).encode())
    assert decide(rig, browser_request(rig, GRAPHQL_PATH, "POST", body=query)).allowed
    rig.key_record(scopes=frozenset({"mlflow:read", "mlflow:write"}), version=2)
    asyncio.run(rig.checker.lookup.invalidate(rig.key.parsed.key_id))
    assert decide(rig, write).allowed  # the key's live record, not a copy


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"revoked_at": 1.0}, Reason.REVOKED),
        ({"disabled_at": 1.0}, Reason.USER_DISABLED),
        ({"expires_at": 1.0}, Reason.EXPIRED),
    ],
)
def test_the_keys_status_ends_its_sessions(
    rig: Rig, change: dict[str, float], reason: Reason
) -> None:
    assert decide(rig, browser_request(rig)).allowed
    rig.key_record(**change, version=2)
    asyncio.run(rig.checker.lookup.invalidate(rig.key.parsed.key_id))  # the NOTIFY
    assert decide(rig, browser_request(rig)).reason is reason


def test_signed_out_and_absolute_expiry(rig: Rig) -> None:
    assert decide(rig, browser_request(rig)).allowed
    rig.session(revoked_at=rig.clock.now - 1)
    asyncio.run(rig.checker.sessions.lookup.invalidate(cookie.id_hash(rig.session_id)))  # type: ignore[union-attr]
    assert decide(rig, browser_request(rig)).reason is Reason.SESSION_EXPIRED
    rig.session(revoked_at=None)
    asyncio.run(rig.checker.sessions.lookup.invalidate(cookie.id_hash(rig.session_id)))  # type: ignore[union-attr]
    rig.clock.now += 86400 + 1  # no notification: checked on every request
    assert decide(rig, browser_request(rig)).reason is Reason.SESSION_EXPIRED


def test_idle_is_judged_from_memory_then_confirmed_once_by_the_store(rig: Rig) -> None:
    request = browser_request(rig)
    assert decide(rig, request).allowed  # seen now: marked in this instance's memory
    rig.clock.now += 3000
    assert rig.checker.check_now(request) is not None  # within the idle timeout: no I/O
    rig.clock.now += 3700  # idle past the timeout here, and in the stored record
    assert rig.checker.check_now(request) is None  # looks idle: the store must confirm
    fetches = rig.store.fetches
    assert decide(rig, request).reason is Reason.SESSION_EXPIRED
    assert rig.store.fetches == fetches + 1
    again = rig.checker.check_now(request)  # remembered as ended: no second store read
    assert again is not None and again.reason is Reason.SESSION_EXPIRED


def test_a_session_busy_on_another_instance_is_not_idle(rig: Rig) -> None:
    request = browser_request(rig)
    assert decide(rig, request).allowed
    rig.clock.now += 7200  # idle here …
    rig.session(last_seen_at=rig.clock.now - 30)  # … but another instance wrote last_seen_at
    assert rig.checker.check_now(request) is None
    assert decide(rig, request).allowed


def test_cross_site_changes_are_refused_before_any_io(rig: Rig) -> None:
    for site, origin in (
        ("cross-site", "https://evil.example"),
        ("same-site", None),
        ("none", None),
    ):
        forged = with_signals(browser_request(rig, CREATE, "POST"), fetch_site=site, origin=origin)
        assert decide(rig, forged).reason is Reason.CROSS_SITE_REQUEST
    no_fetch_headers = with_signals(
        browser_request(rig, CREATE, "POST"),
        origin="https://evil.example",
        fetch_site=None,
        fetch_mode=None,
        fetch_dest=None,
    )
    assert decide(rig, no_fetch_headers).reason is Reason.CROSS_SITE_REQUEST
    assert rig.store.fetches == 0
    same = browser_request(rig, CREATE, "POST", sec_fetch_site="same-origin")
    assert decide(rig, same).reason is Reason.INSUFFICIENT_SCOPE  # past CSRF: the scope decides
    by_origin = with_signals(same, origin=ORIGIN, fetch_site=None, fetch_mode=None, fetch_dest=None)
    assert decide(rig, by_origin).reason is Reason.INSUFFICIENT_SCOPE


def navigation(
    rig: Rig, path: str = UI, session: str | None = None, authorization: str | None = None
) -> CheckInput:
    return browser_request(
        rig,
        path,
        session=session,
        authorization=authorization,
        sec_fetch_mode="navigate",
        sec_fetch_dest="document",
    )


def test_a_refused_page_load_goes_to_the_sign_in_page(rig: Rig) -> None:
    denied = decide(rig, navigation(rig, "/api/mlflow/?o=1", session=cookie.new_session_id()))
    assert denied.reason is Reason.INVALID_SESSION and denied.location is not None
    path, _, query = denied.location.partition("?")
    assert path == "/login"
    assert parse_qs(query) == {"next": ["/api/mlflow/?o=1"], "reason": ["invalid_session"]}
    no_cookie = with_signals(navigation(rig), cookie=None)
    assert decide(rig, no_cookie).location is not None  # missing_key: sign in
    assert rig.checker.check_now(no_cookie) == decide(rig, no_cookie)


def test_fetches_programs_and_403s_keep_the_json(rig: Rig) -> None:
    fetch = browser_request(rig, session=cookie.new_session_id())  # the UI's own XHR
    assert decide(rig, fetch).location is None
    rest = navigation(rig, "/api/mlflow/api/2.0/mlflow/experiments/search")
    assert decide(rig, rest).location is None  # not a UI page
    plain = CheckInput("GET", UI, CredentialSources(None, None, ""), "10.0.0.1")
    assert decide(rig, plain).location is None  # no Sec-Fetch-*: a program
    key = navigation(rig, authorization=f"Bearer {keys.generate('live').token}")
    assert decide(rig, key).location is None  # a key was sent: its answer is JSON
    write = navigation(rig, CREATE)
    assert decide(rig, write._replace(method="POST")).location is None
