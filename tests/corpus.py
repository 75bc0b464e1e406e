"""The bad-input corpus of shared/TESTPLAN.md, as data: one list that every transport is run
against (unit tests on the pipeline, the gRPC and HTTP transports, Envoy end to end). The browser
session corpus (``session_corpus``) adds the cookie, CSRF, GraphQL and sign-in-redirect cases."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from authz.keys import format as keys
from authz.sessions.cookie import COOKIE_NAME, new_session_id


@dataclass(frozen=True)
class Case:
    name: str
    expected: str  # a Reason value
    headers: tuple[tuple[str, str], ...] = ()
    query: str = ""
    method: str = "GET"
    path: str = "/api/mlflow/api/2.0/mlflow/experiments/get"
    notes: dict[str, str] = field(default_factory=dict)
    body: bytes = b""  # sent on the GraphQL route only (Envoy's with_request_body)
    redirect: bool = False  # a browser's page load: 302 to the sign-in page (reason in the URL)


def _tamper(token: str, index: int) -> str:
    ch = token[index]
    return token[:index] + ("A" if ch != "A" else "B") + token[index + 1 :]


def corpus(valid: str, revoked: str, unknown_id_key: str, test_env_key: str) -> list[Case]:
    """Cases for a gateway accepting only ``live`` keys.

    ``valid`` is an active live key with scope mlflow:read only; ``revoked`` a revoked live key;
    ``unknown_id_key`` a well-formed live key whose id is not in the store; ``test_env_key`` a
    well-formed test key.
    """
    parsed = keys.parse(valid)
    assert parsed is not None
    wrong_secret = keys.generate("live", parsed.key_id).token
    bearer = f"Bearer {valid}"
    return [
        Case("valid", "allowed", (("authorization", bearer),)),
        Case("valid lower-case scheme", "allowed", (("authorization", f"bearer {valid}"),)),
        Case("valid upper-case scheme", "allowed", (("authorization", f"BEARER {valid}"),)),
        Case("valid x-api-key", "allowed", (("x-api-key", valid),)),
        Case("valid query", "allowed", query=f"api_key={valid}"),
        Case(
            "read-only POST search",
            "allowed",
            (("authorization", bearer),),
            method="POST",
            path="/api/mlflow/api/2.0/mlflow/runs/search",
        ),
        Case("no credential", "missing_key"),
        Case("empty header", "missing_key", (("authorization", ""),)),
        Case("bearer with nothing", "missing_key", (("authorization", "Bearer"),)),
        Case("bearer and a space", "missing_key", (("authorization", "Bearer "),)),
        Case("basic scheme", "malformed_key", (("authorization", f"Basic {valid}"),)),
        Case("bearer colon", "malformed_key", (("authorization", f"Bearer:{valid}"),)),
        Case("bearer tab", "malformed_key", (("authorization", f"Bearer\t{valid}"),)),
        Case("two spaces", "malformed_key", (("authorization", f"Bearer  {valid}"),)),
        Case(
            "header and x-api-key",
            "multiple_credentials",
            (("authorization", bearer), ("x-api-key", valid)),
        ),
        Case(
            "header and query",
            "multiple_credentials",
            (("authorization", bearer),),
            query=f"api_key={valid}",
        ),
        Case("two query params", "multiple_credentials", query=f"api_key={valid}&api_key={valid}"),
        Case(
            "two authorization headers",
            "multiple_credentials",
            (("authorization", bearer), ("authorization", bearer)),
        ),
        Case("oversized key", "malformed_key", (("authorization", "Bearer " + "a" * 5000),)),
        Case("truncated", "malformed_key", (("authorization", bearer[:-1]),)),
        Case("extended", "malformed_key", (("authorization", bearer + "x"),)),
        Case(
            "one character changed",
            "malformed_key",
            (("authorization", "Bearer " + _tamper(valid, 30)),),
        ),
        Case("random garbage", "malformed_key", (("authorization", "Bearer not-a-key"),)),
        Case(
            "wrong secret, right checksum",
            "invalid_secret",
            (("authorization", f"Bearer {wrong_secret}"),),
        ),
        Case("unknown key id", "unknown_key", (("authorization", f"Bearer {unknown_id_key}"),)),
        Case(
            "test key at live gateway",
            "wrong_environment",
            (("authorization", f"Bearer {test_env_key}"),),
        ),
        Case("revoked", "revoked", (("authorization", f"Bearer {revoked}"),)),
        Case(
            "write with read key",
            "insufficient_scope",
            (("authorization", bearer),),
            method="POST",
            path="/api/mlflow/api/2.0/mlflow/experiments/create",
        ),
    ]


HOST = "gateway.example:8443"
ORIGIN = f"https://{HOST}"
UI = "/api/mlflow/"
SEARCH = "/api/mlflow/ajax-api/2.0/mlflow/experiments/search?max_results=1"
CREATE = "/api/mlflow/ajax-api/2.0/mlflow/experiments/create"
GRAPHQL = "/api/mlflow/graphql"


def _fetch(
    session: str | None, site: str = "same-origin", **more: str
) -> tuple[tuple[str, str], ...]:
    """A browser's fetch (as MLflow's UI sends them), with the session cookie when given."""
    headers = [("host", HOST), ("sec-fetch-site", site), ("sec-fetch-mode", "cors")]
    headers.append(("sec-fetch-dest", "empty"))
    if session is not None:
        headers.append(("cookie", f"theme=dark; {COOKIE_NAME}={session}"))
    return (*headers, *more.items())


def _old_browser(session: str, origin: str) -> tuple[tuple[str, str], ...]:
    """A browser that sends no Sec-Fetch-* (only Origin says where a change came from)."""
    return (("host", HOST), ("cookie", f"{COOKIE_NAME}={session}"), ("origin", origin))


def _page_load(session: str | None) -> tuple[tuple[str, str], ...]:
    headers = [("host", HOST), ("sec-fetch-site", "none"), ("sec-fetch-mode", "navigate")]
    headers.append(("sec-fetch-dest", "document"))
    if session is not None:
        headers.append(("cookie", f"{COOKIE_NAME}={session}"))
    return tuple(headers)


def _graphql(document: str, operation: str | None = None) -> bytes:
    return json.dumps({"query": document, "operationName": operation, "variables": {}}).encode()


def session_corpus(
    read_session: str, ended_session: str, revoked_key_session: str, valid: str
) -> list[Case]:
    """Cases for browser sessions. ``read_session`` is a live session of a key with mlflow:read
    only (``valid`` is that key); ``ended_session`` one that was signed out;
    ``revoked_key_session`` a live session whose key was revoked."""
    json_type = ("content-type", "application/json")
    parsed = keys.parse(valid)
    assert parsed is not None
    wrong_secret = keys.generate("live", parsed.key_id).token
    query = _graphql("query Q($i: In!) { mlflowGetExperiment(input: $i) { experiment { name } } }")
    return [
        Case("session", "allowed", _fetch(read_session), path=SEARCH),
        Case("session on the UI page", "allowed", _page_load(read_session), path=UI),
        Case(
            "session, static file", "allowed", _fetch(read_session), path=UI + "static-files/a.js"
        ),
        Case("session on the REST API", "missing_key", _fetch(read_session)),
        Case("session on another upstream", "missing_key", _fetch(read_session), path="/echo/x"),
        Case("unknown session", "invalid_session", _fetch(new_session_id()), path=SEARCH),
        Case("malformed session", "invalid_session", _fetch("short"), path=SEARCH),
        Case(
            "two session cookies",
            "multiple_credentials",
            (
                *_fetch(None),
                ("cookie", f"{COOKIE_NAME}={read_session}; {COOKIE_NAME}={read_session}"),
            ),
            path=SEARCH,
        ),
        Case("signed out", "session_expired", _fetch(ended_session), path=SEARCH),
        Case("its key revoked", "revoked", _fetch(revoked_key_session), path=SEARCH),
        Case(
            "cross-site change",
            "cross_site_request",
            _fetch(read_session, "cross-site", origin="https://evil.example"),
            method="POST",
            path=CREATE,
        ),
        Case(
            "cross-site change, no Sec-Fetch",
            "cross_site_request",
            _old_browser(read_session, "https://evil.example"),
            method="POST",
            path=CREATE,
        ),
        Case(
            "same-origin change, read session",
            "insufficient_scope",
            _fetch(read_session, origin=ORIGIN),
            method="POST",
            path=CREATE,
        ),
        Case(
            "same-origin by Origin only",
            "insufficient_scope",
            _old_browser(read_session, ORIGIN),
            method="POST",
            path=CREATE,
        ),
        *(
            Case(name, expected, (*_fetch(read_session), json_type), "", "POST", GRAPHQL, body=body)
            for name, expected, body in (
                ("GraphQL query", "allowed", query),
                ("GraphQL mutation", "insufficient_scope", _graphql("mutation { m { a } }")),
                (
                    "GraphQL comment hides a mutation",
                    "insufficient_scope",
                    _graphql("query A { a } #c\rmutation B { b }", "B"),
                ),
            )
        ),
        Case("GraphQL GET", "insufficient_scope", _fetch(read_session), path=GRAPHQL),
        Case(
            "GraphQL query with a key",
            "allowed",
            (("authorization", f"Bearer {valid}"), json_type),
            method="POST",
            path=GRAPHQL,
            body=query,
        ),
        Case(
            "key and a bad cookie",
            "allowed",
            (*_fetch(new_session_id()), ("authorization", f"Bearer {valid}")),
            path=SEARCH,
        ),
        Case(
            "bad key and a good cookie",
            "invalid_secret",
            (*_fetch(read_session), ("authorization", f"Bearer {wrong_secret}")),
            path=SEARCH,
        ),
        Case("page load, no session", "missing_key", _page_load(None), path=UI, redirect=True),
        Case(
            "page load, unknown session",
            "invalid_session",
            _page_load(new_session_id()),
            path=UI,
            redirect=True,
        ),
        Case(
            "page load, signed out",
            "session_expired",
            _page_load(ended_session),
            path=UI,
            redirect=True,
        ),
        Case(
            "page load, key revoked",
            "revoked",
            _page_load(revoked_key_session),
            path=UI,
            redirect=True,
        ),
        Case("the UI's fetch, no session", "missing_key", _fetch(None), path=SEARCH),
        Case("program, no key", "missing_key", (("accept", "text/html"),), path=UI),
    ]
