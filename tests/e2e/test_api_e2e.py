"""The keys REST API through real Envoy (HTTPS, the stack's CA): every endpoint with real keys,
the authorization matrix, and keys made, rotated or revoked over the API acting on MLflow at once.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.e2e.conftest import Gateway
from tests.support.authz import poll

API = "/api/v1/auth"
SEARCH = "/api/mlflow/api/2.0/mlflow/experiments/search?max_results=1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def gw(gateways: dict[str, Gateway]) -> Gateway:
    return gateways["grpc"]  # the API is the same process type behind either transport


@pytest.fixture(scope="module")
def tokens(gw: Gateway) -> dict[str, str]:
    service = gw.service("test:api-e2e")
    made = {
        "admin": service.create_key(user_email="api-admin@example.com", name="a", scopes=["admin"]),
        "owner": service.create_key(
            user_email="api-owner@example.com", name="o", scopes=["keys:manage", "mlflow:read"]
        ),
        "other": service.create_key(
            user_email="api-other@example.com", name="x", scopes=["keys:manage", "mlflow:read"]
        ),
        "mlflow": service.create_key(
            user_email="api-owner@example.com", name="m", scopes=["mlflow:read", "mlflow:write"]
        ),
        "revoked": service.create_key(
            user_email="api-owner@example.com", name="r", scopes=["keys:manage"]
        ),
    }
    service.revoke_key(made["revoked"][0].key_id)
    return {name: new.token for name, (_view, new) in made.items()}


def call(
    gw: Gateway, method: str, path: str, token: str | None = None, **kwargs: Any
) -> requests.Response:
    headers = bearer(token) if token else {}
    return requests.request(
        method, gw.url + path, headers=headers, verify=gw.ca, timeout=10, **kwargs
    )


def test_health_without_a_key(gw: Gateway) -> None:
    assert call(gw, "GET", f"{API}/health").json() == {"status": "ok"}
    assert call(gw, "GET", f"{API}/openapi.json").json()["info"]["title"]


@pytest.mark.parametrize(
    ("who", "status", "error"),
    [
        ("owner", 200, None),
        ("admin", 200, None),
        ("mlflow", 403, "forbidden"),
        ("revoked", 401, "revoked"),
        (None, 401, "missing_key"),
    ],
)
def test_authorization_matrix_on_list(
    gw: Gateway, tokens: dict[str, str], who: str | None, status: int, error: str | None
) -> None:
    response = call(gw, "GET", f"{API}/keys", tokens[who] if who else None)
    assert response.status_code == status, response.text
    if error:
        assert response.json()["error"] == error
        assert set(response.json()) == {"error", "error_code", "message", "docs"}


def test_query_string_key_is_stripped_by_envoy(gw: Gateway, tokens: dict[str, str]) -> None:
    response = requests.get(
        f"{gw.url}{API}/whoami", params={"api_key": tokens["owner"]}, verify=gw.ca, timeout=10
    )
    assert response.status_code == 401 and response.json()["error"] == "missing_key"


def test_every_endpoint_and_mlflow_at_once(gw: Gateway, tokens: dict[str, str]) -> None:
    owner = tokens["owner"]
    me = call(gw, "GET", f"{API}/whoami", owner).json()
    created = call(
        gw, "POST", f"{API}/keys", owner, json={"name": "e2e", "scopes": ["mlflow:read"]}
    )
    assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
    new_token, key_id = created.json()["token"], created.json()["key"]["key_id"]
    # Made over the API, accepted by the gateway's authz on the very first request.
    assert gw.get(SEARCH, headers=bearer(new_token)).status_code == 200

    listed = call(gw, "GET", f"{API}/keys", owner, params={"limit": 50}).json()
    assert key_id in {k["key_id"] for k in listed["items"]}
    assert call(gw, "GET", f"{API}/keys/{key_id}", owner).json()["user_email"] == me["user_email"]
    assert call(gw, "GET", f"{API}/keys/{key_id}", tokens["other"]).status_code == 403
    patched = call(gw, "PATCH", f"{API}/keys/{key_id}", owner, json={"name": "renamed"})
    assert patched.json()["name"] == "renamed"
    usage = call(gw, "GET", f"{API}/keys/{key_id}/usage", owner, params={"since": "1h"})
    assert usage.status_code == 200 and usage.json()["key_id"] == key_id

    rotated = call(gw, "POST", f"{API}/keys/{key_id}/rotate", owner, json={"grace": "1h"})
    assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
    rotated_token = rotated.json()["token"]
    assert gw.get(SEARCH, headers=bearer(rotated_token)).status_code == 200
    assert gw.get(SEARCH, headers=bearer(new_token)).status_code == 200  # grace

    audit = call(gw, "GET", f"{API}/audit", tokens["admin"], params={"key": key_id}).json()
    assert {row["actor"] for row in audit["items"]} == {f"api:{me['key_id']}"}
    assert call(gw, "GET", f"{API}/audit", owner).status_code == 403


def test_revoked_over_the_api_stops_within_a_second(gw: Gateway, tokens: dict[str, str]) -> None:
    owner = tokens["owner"]
    created = call(gw, "POST", f"{API}/keys", owner, json={"name": "doomed"}).json()
    token, key_id = created["token"], created["key"]["key_id"]
    assert gw.get(SEARCH, headers=bearer(token)).status_code == 200
    assert call(gw, "DELETE", f"{API}/keys/{key_id}", owner).status_code == 204
    assert call(gw, "DELETE", f"{API}/keys/{key_id}", owner).status_code == 204
    poll(lambda: gw.get(SEARCH, headers=bearer(token)).status_code == 401, timeout=1.0)
