"""HOKUSAI_RATE_LIMIT_ENFORCEMENT=check through a real authz server (Postgres, Redis): a key with
burst B gets exactly B allowances, then 429 with the x-ratelimit-* and retry-after headers, on
the gRPC and the HTTP transport, with the exact and the approximate limiter."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from authz.management.service import KeyService
from authz.settings import Settings
from authz.storage.db import connector
from tests.support.authz import GrpcCheckClient, RunningAuthz, http_check, running_authz

PATH = "/api/mlflow/api/2.0/mlflow/experiments/get?experiment_id=0"
BURST = 3
PER_HOUR = 60  # one request per minute refills: nothing refills during the test


@pytest.fixture(params=["exact", "approximate"])
def authz(
    request: pytest.FixtureRequest, database_url: str, redis_url: str
) -> Iterator[tuple[RunningAuthz, KeyService]]:
    settings = Settings(
        bcrypt_cost=4,
        database_url=database_url,
        redis_url=redis_url,
        rate_limit_enforcement="check",
        rate_limit_mode=request.param,
    )
    with running_authz(settings) as running:
        yield running, KeyService(connector(database_url), settings, "test:check-rl")


def new_token(svc: KeyService) -> str:
    _view, new = svc.create_key(
        user_email="rl@example.com",
        name="rl",
        scopes=["mlflow:read"],
        rate_limit_per_hour=PER_HOUR,
        burst=BURST,
    )
    return new.token


def test_grpc_burst_then_429_with_headers(authz: tuple[RunningAuthz, KeyService]) -> None:
    running, svc = authz
    headers = [("authorization", f"Bearer {new_token(svc)}")]
    client = GrpcCheckClient(running.ports.grpc)
    try:
        answers = [client.check("GET", PATH, headers) for _ in range(BURST + 2)]
    finally:
        client.close()
    assert [a.HasField("ok_response") for a in answers] == [True] * BURST + [False] * 2
    remaining = [
        {h.header.key: h.header.value for h in a.ok_response.response_headers_to_add}
        for a in answers[:BURST]
    ]
    assert [r["x-ratelimit-remaining"] for r in remaining] == ["2", "1", "0"]
    assert all(r["x-ratelimit-limit"] == str(PER_HOUR) for r in remaining)
    denied = answers[BURST].denied_response
    assert denied.status.code == 429
    got = {h.header.key: h.header.value for h in denied.headers}
    assert got["x-ratelimit-limit"] == "60" and got["x-ratelimit-remaining"] == "0"
    assert 0 < int(got["retry-after"]) <= 60
    assert 120 <= int(got["x-ratelimit-reset"]) <= 180  # the full burst of 3 back in ≤ 3 min
    assert json.loads(denied.body)["error"] == "rate_limited"


def test_http_burst_then_429_with_headers(authz: tuple[RunningAuthz, KeyService]) -> None:
    running, svc = authz
    headers = [("authorization", f"Bearer {new_token(svc)}")]
    answers = [http_check(running.ports.http, "GET", PATH, headers) for _ in range(BURST + 2)]
    assert [a.status for a in answers] == [200] * BURST + [429] * 2
    assert [a.header("x-ratelimit-remaining") for a in answers[:BURST]] == ["2", "1", "0"]
    assert answers[0].header("x-hokusai-key-id")  # the cached identity headers are intact
    denied = answers[BURST]
    assert denied.header("x-ratelimit-limit") == "60"
    assert denied.header("x-ratelimit-remaining") == "0"
    assert 0 < int(denied.header("retry-after") or "0") <= 60
    assert 120 <= int(denied.header("x-ratelimit-reset") or "0") <= 180
    assert json.loads(denied.body)["error"] == "rate_limited"
