"""The gateway end to end: real Envoy (both ext_authz transports), authz, Postgres, Redis, MLflow,
and the standard MLflow client."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests

from authz.keys import format as keys
from authz.transports import wire
from cli.main import main as hokusai
from tests.e2e.conftest import ECHO_PREFIX, Gateway
from tests.support.authz import poll
from tests.support.mlflow import assert_mlflow_client_works

SEARCH = "/api/mlflow/api/2.0/mlflow/experiments/search?max_results=1"
CREATE = "/api/mlflow/api/2.0/mlflow/experiments/create"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_of(response: requests.Response) -> str:
    return str(response.json()["error"])


def test_mlflow_client_end_to_end(gateway: Gateway) -> None:
    _, new = gateway.service().create_key(
        user_email="ds@example.com", name="client", scopes=["mlflow:read", "mlflow:write"]
    )
    assert_mlflow_client_works(gateway.mlflow_uri, new.token, gateway.ca)


def test_read_key_searches_but_cannot_write(gateway: Gateway) -> None:
    _, new = gateway.service().create_key(
        user_email="r@example.com", name="ro", scopes=["mlflow:read"]
    )
    assert gateway.get(SEARCH, headers=bearer(new.token)).status_code == 200
    search = gateway.post(
        "/api/mlflow/api/2.0/mlflow/runs/search",
        headers=bearer(new.token),
        json={"experiment_ids": ["0"], "max_results": 1},
    )
    assert search.status_code == 200
    denied = gateway.post(CREATE, headers=bearer(new.token), json={"name": "nope"})
    assert denied.status_code == 403
    assert error_of(denied) == "insufficient_scope"


def test_denials_have_the_right_codes(gateway: Gateway) -> None:
    service = gateway.service()
    _, good = service.create_key(user_email="d@example.com", name="good")
    _, revoked = service.create_key(user_email="d@example.com", name="revoked")
    service.revoke_key(revoked.parsed.key_id)
    _, expiring = service.create_key(
        user_email="d@example.com", name="exp", expires_in=timedelta(seconds=1)
    )
    wrong = keys.generate("live", good.parsed.key_id).token
    cases = {
        "missing_key": {},
        "malformed_key": bearer("hk_live_nonsense"),
        "invalid_secret": bearer(wrong),
        "revoked": bearer(revoked.token),
        "unknown_key": bearer(keys.generate("live").token),
    }
    for code, headers in cases.items():
        response = gateway.get(SEARCH, headers=headers)
        assert response.status_code == 401, code
        assert error_of(response) == code
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert set(response.json()) == {"error", "error_code", "message", "docs"}
        assert response.json()["error_code"] == "UNAUTHENTICATED"  # what MLflow's client shows
    poll(lambda: gateway.get(SEARCH, headers=bearer(expiring.token)).status_code == 401, timeout=5)
    assert error_of(gateway.get(SEARCH, headers=bearer(expiring.token))) == "expired"


def test_ip_allowlist_ignores_forged_forwarded_for(gateway: Gateway) -> None:
    _, new = gateway.service().create_key(
        user_email="ip@example.com", name="ip", allowed_ips=["10.0.0.0/8"]
    )
    for extra in (
        {},
        {"X-Forwarded-For": "10.1.2.3"},
        {"X-Real-IP": "10.1.2.3"},
        {"Forwarded": "for=10.1.2.3"},
    ):
        response = gateway.get(SEARCH, headers={**bearer(new.token), **extra})
        assert response.status_code == 403, extra
        assert error_of(response) == "ip_not_allowed"


def test_upstream_never_receives_credentials(gateway: Gateway) -> None:
    view, new = gateway.service().create_key(
        user_email="up@example.com", name="up", scopes=["mlflow:read"]
    )
    before = len(gateway.echo.requests)
    forged = {"x-hokusai-key-id": "forged", "x-hokusai-user-id": "0", "x-hokusai-scopes": "admin"}
    sent = [
        gateway.get(f"{ECHO_PREFIX}a?x=1", headers={**bearer(new.token), **forged}),
        gateway.get(f"{ECHO_PREFIX}b", headers={"X-API-Key": new.token}),
        gateway.get(f"{ECHO_PREFIX}c?api_key={new.token}&y=2"),
    ]
    assert [r.status_code for r in sent] == [200, 200, 200]
    seen = gateway.echo.requests[before:]
    assert len(seen) == 3
    for request in seen:
        assert "authorization" not in request.headers
        assert "x-api-key" not in request.headers
        assert "api_key" not in request.path
        assert new.parsed.secret not in json.dumps(request.headers) + request.path
        assert request.headers[wire.KEY_ID_HEADER] == view.key_id
        assert request.headers[wire.USER_ID_HEADER] == str(view.user_id)
        assert request.headers[wire.SCOPES_HEADER] == "mlflow:read"
    assert seen[0].path.endswith("?x=1") and seen[2].path.endswith("?y=2")


def test_client_identity_headers_are_stripped_on_public_routes(gateway: Gateway) -> None:
    response = gateway.get("/health", headers={"x-hokusai-key-id": "forged"})
    assert response.status_code == 200
    assert gateway.get("/api/mlflow/health/mlflow").status_code == 200


def test_unknown_route_is_a_json_404_for_a_valid_key(gateway: Gateway) -> None:
    _, new = gateway.service().create_key(user_email="nf@example.com", name="nf")
    response = gateway.get("/nowhere", headers=bearer(new.token))
    assert response.status_code == 404
    assert error_of(response) == "not_found"


def test_plain_http_redirects_to_https(gateway: Gateway) -> None:
    response = requests.get(
        f"http://127.0.0.1:{gateway.record.http_port}/api/mlflow/x",
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 301
    assert response.headers["location"].startswith("https://")
    hsts = gateway.get("/health").headers.get("strict-transport-security", "")
    assert "max-age=" in hsts


def test_revocation_reaches_both_instances_within_a_second(
    gateways: dict[str, Gateway], capsys: pytest.CaptureFixture[str]
) -> None:
    first = gateways["grpc"]
    view, new = first.service().create_key(user_email="rv@example.com", name="rv")
    for gateway in gateways.values():
        assert gateway.get(SEARCH, headers=bearer(new.token)).status_code == 200
    code = hokusai(
        ["auth", "revoke-key", view.key_id, "--reason", "e2e", "--database-url", first.database_url]
    )
    assert code == 0, capsys.readouterr().err
    for gateway in gateways.values():
        took = poll(
            lambda g=gateway: (
                g.get(SEARCH, headers=bearer(new.token)).status_code  # type: ignore[misc]
                == 401
            ),
            timeout=1.0,
        )
        assert took <= 1.0


def test_rotation_grace_then_old_key_stops(gateway: Gateway) -> None:
    service = gateway.service()
    view, old = service.create_key(user_email="rot@example.com", name="rot")
    assert gateway.get(SEARCH, headers=bearer(old.token)).status_code == 200
    rotation = service.rotate_key(view.key_id, grace=timedelta(seconds=2))
    assert gateway.get(SEARCH, headers=bearer(rotation.token.token)).status_code == 200
    assert gateway.get(SEARCH, headers=bearer(old.token)).status_code == 200
    poll(lambda: gateway.get(SEARCH, headers=bearer(old.token)).status_code == 401, timeout=6)
    assert error_of(gateway.get(SEARCH, headers=bearer(old.token))) == "expired"
    assert gateway.get(SEARCH, headers=bearer(rotation.token.token)).status_code == 200


def test_ip_allowlist_admits_the_address_envoy_trusts(gateway: Gateway) -> None:
    service = gateway.service()
    _, open_key = service.create_key(user_email="ip2@example.com", name="open")
    before = len(gateway.echo.requests)
    assert gateway.get(f"{ECHO_PREFIX}ip", headers=bearer(open_key.token)).status_code == 200
    seen = gateway.echo.requests[before].headers["x-forwarded-for"].split(",")[-1].strip()
    _, allowed = service.create_key(user_email="ip2@example.com", name="in", allowed_ips=[seen])
    assert gateway.get(SEARCH, headers=bearer(allowed.token)).status_code == 200
    spoofed = {**bearer(allowed.token), "X-Forwarded-For": "203.0.113.9"}
    assert gateway.get(SEARCH, headers=spoofed).status_code == 200  # the real peer still counts


def test_huge_headers_are_refused_by_envoy_before_authz(gateway: Gateway) -> None:
    response = gateway.get(SEARCH, headers={"X-Padding": "a" * 70_000})
    assert response.status_code == 431
    assert error_of(response) == "request_too_large"
