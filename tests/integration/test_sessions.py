"""Browser sessions on real Postgres and Redis: both transports decide the session corpus alike;
a sign-out, a revocation or a disabled user ends sessions on two instances within a second (the
NOTIFY path); the triggers audit sign-ins, sign-outs and refusals (never the id or its hash);
last-seen writes are batched and unannounced; ended sessions are pruned."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from authz.keys import format as keys
from authz.management.service import KeyService
from authz.management.sessions import SessionService
from authz.sessions import cookie
from authz.settings import Settings
from authz.storage.db import connector
from tests.corpus import HOST, SEARCH, Case, session_corpus
from tests.support.authz import GrpcCheckClient, RunningAuthz, http_check, poll, running_authz

BASE = Settings(
    bcrypt_cost=4, accepted_envs=frozenset({"live"}), local_cache_ttl=60.0, negative_cache_ttl=0.2
)


def fetch_headers(session_id: str) -> list[tuple[str, str]]:
    return [
        ("host", HOST),
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-dest", "empty"),
        ("cookie", f"{cookie.COOKIE_NAME}={session_id}"),
    ]


def status(authz: RunningAuthz, session_id: str) -> int:
    return http_check(authz.ports.http, "GET", SEARCH, fetch_headers(session_id)).status


def reason(authz: RunningAuthz, session_id: str) -> str:
    answer = http_check(authz.ports.http, "GET", SEARCH, fetch_headers(session_id))
    return "allowed" if answer.status == 200 else str(json.loads(answer.body)["error"])


class Services:
    def __init__(self, settings: Settings) -> None:
        self.keys = KeyService(connector(settings.database_url), settings, "test:sessions")
        self.sessions = SessionService(connector(settings.database_url), settings)

    def key(self, email: str, scopes: tuple[str, ...] = ("mlflow:read",)) -> keys.NewKey:
        _, new = self.keys.create_key(user_email=email, name="browser", scopes=scopes)
        return new

    def sign_in(self, new: keys.NewKey) -> str:
        view = self.keys.get_key(new.parsed.key_id)
        return self.sessions.start(view.key_id, view.user_id, "10.1.2.3", "pytest").session_id


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return BASE.replace(database_url=database_url, redis_url=redis_url)


@pytest.fixture
def services(settings: Settings) -> Services:
    return Services(settings)


@pytest.fixture
def authz(settings: Settings) -> Iterator[RunningAuthz]:
    with running_authz(settings) as running:
        yield running


def grpc_answer(client: GrpcCheckClient, case: Case) -> tuple[str, str | None]:
    response = client.check(case.method, case.path, list(case.headers), body=case.body)
    if response.HasField("ok_response"):
        return "allowed", None
    denied = response.denied_response
    headers = {h.header.key: h.header.value for h in denied.headers}
    if denied.status.code == 302:
        return _from_location(headers["location"])
    return str(json.loads(denied.body)["error"]), None


def http_answer(port: int, case: Case) -> tuple[str, str | None]:
    answer = http_check(port, case.method, case.path, list(case.headers), body=case.body)
    if answer.status == 200:
        return "allowed", None
    if answer.status == 302:
        return _from_location(answer.header("location") or "")
    return str(json.loads(answer.body)["error"]), None


def _from_location(location: str) -> tuple[str, str]:
    parts = urlsplit(location)
    query = parse_qs(parts.query)
    assert parts.path == "/login" and query["next"] == ["/api/mlflow/"], location
    return query["reason"][0], location


def test_both_transports_decide_the_session_corpus_alike(
    authz: RunningAuthz, services: Services
) -> None:
    reader = services.key("reader@example.com")
    live = services.sign_in(reader)
    ended = services.sign_in(reader)
    services.sessions.end(ended)
    doomed = services.key("doomed@example.com")
    orphan = services.sign_in(doomed)
    services.keys.revoke_key(doomed.parsed.key_id)
    client = GrpcCheckClient(authz.ports.grpc)
    try:
        for case in session_corpus(live, ended, orphan, reader.token):
            for answer in (grpc_answer(client, case), http_answer(authz.ports.http, case)):
                assert answer[0] == case.expected, case.name
                assert (answer[1] is not None) == case.redirect, case.name
    finally:
        client.close()


def test_nginx_gets_keys_only_and_never_a_redirect(authz: RunningAuthz, services: Services) -> None:
    """NGINX's auth_request turns any answer but 2xx/401/403 into a 500: no 302, no sessions."""
    live = services.sign_in(services.key("nginx@example.com"))
    page_load = [
        ("x-original-uri", "/api/mlflow/"),
        ("x-original-method", "GET"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-dest", "document"),
    ]
    answer = http_check(authz.ports.http, "GET", "/auth", page_load, prefix="")
    assert answer.status == 401 and json.loads(answer.body)["error"] == "missing_key"
    with_session = [*page_load, ("cookie", f"{cookie.COOKIE_NAME}={live}")]
    answer = http_check(authz.ports.http, "GET", "/auth", with_session, prefix="")
    assert answer.status == 401 and json.loads(answer.body)["error"] == "missing_key"


def test_sign_out_revocation_and_disabling_reach_two_instances_within_a_second(
    settings: Settings, services: Services
) -> None:
    reader = services.key("two@example.com")
    with running_authz(settings) as one, running_authz(settings) as two:
        first, second, third = (services.sign_in(reader) for _ in range(3))
        for instance in (one, two):
            assert all(status(instance, s) == 200 for s in (first, second, third))
        services.sessions.end(first)
        for instance in (one, two):
            took = poll(lambda i=instance: reason(i, first) == "session_expired", timeout=1.0)  # type: ignore[misc]
            assert took <= 1.0
        services.keys.disable_user("two@example.com", "left the team")
        for instance in (one, two):
            poll(lambda i=instance: reason(i, second) == "user_disabled", timeout=1.0)  # type: ignore[misc]
        services.keys.enable_user("two@example.com")
        for instance in (one, two):
            poll(lambda i=instance: reason(i, second) == "allowed", timeout=1.0)  # type: ignore[misc]
        services.keys.revoke_key(reader.parsed.key_id)
        for instance in (one, two):
            poll(lambda i=instance: reason(i, third) == "revoked", timeout=1.0)  # type: ignore[misc]


def audit_rows(url: str) -> list[tuple[str, str | None, str, dict[str, object]]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT action, key_id, actor, changes FROM audit_log "
            "WHERE action LIKE 'session.%' OR action LIKE 'user.%' ORDER BY id"
        ).fetchall()
    return [(a, k, actor, c) for a, k, actor, c in rows]


def test_the_triggers_audit_sign_in_sign_out_and_refusals(
    settings: Settings, services: Services, authz: RunningAuthz
) -> None:
    new = services.key("audit@example.com")
    session_id = services.sign_in(new)
    assert status(authz, session_id) == 200
    assert authz.call(authz.server.last_seen.flush) == 1  # last_seen_at, batched
    services.sessions.refused(new.parsed.key_id, "invalid_secret", "10.9.9.9")
    services.sessions.end(session_id)
    services.keys.disable_user("audit@example.com", "on leave")
    rows = audit_rows(settings.database_url)
    assert [(a, k) for a, k, _, _ in rows] == [
        ("session.signin", new.parsed.key_id),
        ("session.signin_refused", new.parsed.key_id),
        ("session.signout", new.parsed.key_id),
        ("user.disable", None),
    ]
    assert rows[0][2] == f"web:{new.parsed.key_id}"
    assert rows[0][3]["client"] == "10.1.2.3" and rows[0][3]["user_agent"] == "pytest"
    assert rows[1][3] == {"reason": "invalid_secret", "client": "10.9.9.9"}
    assert rows[3][3] == {
        "user_id": rows[0][3]["user_id"],
        "email": "audit@example.com",
        "reason": "on leave",
    }
    dump = json.dumps([list(r) for r in rows])
    assert session_id not in dump and cookie.id_hash(session_id) not in dump
    with psycopg.connect(settings.database_url) as conn:
        seen = conn.execute("SELECT last_seen_at > created_at FROM sessions").fetchone()
        assert seen == (True,)


def test_ended_sessions_are_pruned_and_live_ones_kept(
    settings: Settings, services: Services
) -> None:
    new = services.key("prune@example.com")
    live, ended, old, idle = (services.sign_in(new) for _ in range(4))
    services.sessions.end(ended)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        where = " WHERE id_hash = decode(%s, 'hex')"
        conn.execute(
            "UPDATE sessions SET expires_at = now() - interval '1 s'" + where,
            [cookie.id_hash(old)],
        )
        conn.execute(
            "UPDATE sessions SET last_seen_at = now() - interval '9 h'" + where,
            [cookie.id_hash(idle)],
        )
    assert services.sessions.prune_exclusively() == 3
    with psycopg.connect(settings.database_url) as conn:
        left = conn.execute("SELECT encode(id_hash, 'hex') FROM sessions").fetchall()
    assert left == [(cookie.id_hash(live),)]
    pruned = [a for a, _, _, _ in audit_rows(settings.database_url) if a == "session.revoke"]
    assert pruned == []  # dead rows are not revocations
