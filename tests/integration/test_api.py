"""The keys REST API in-process (FastAPI + httpx TestClient) against real Postgres and Redis:
every endpoint, the authorization matrix, delegation limits and the one error shape."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from authz.management.policy import PolicyUpdate
from authz.management.service import KeyService
from authz.settings import Settings
from authz.storage.db import connector
from tests.support.keys_api import Caller, api_settings, make_key

API = "/api/v1/auth"
ADMIN = "admin@example.com"
ALICE = "alice@example.com"
BOB = "bob@example.com"
ERROR_FIELDS = {"error", "error_code", "message", "docs"}


@pytest.fixture(scope="module")
def settings(
    postgres_server_url: str, _template_database: str, redis_server: Any
) -> Iterator[Settings]:
    with api_settings(postgres_server_url, _template_database, redis_server) as configured:
        # A central maximum lifetime, as the gateway's operator would set it.
        KeyService(connector(configured.database_url), configured, "test:api").set_policy(
            PolicyUpdate(max_lifetime="400d")
        )
        yield configured


@pytest.fixture(scope="module")
def callers(settings: Settings) -> dict[str, Caller]:
    return {
        "admin": make_key(settings, ADMIN, ("admin",)),
        "alice": make_key(settings, ALICE, ("keys:manage", "mlflow:read")),
        "alice_mlflow": make_key(settings, ALICE, ("mlflow:read", "mlflow:write")),
        "alice_restricted": make_key(
            settings, ALICE, ("keys:manage", "mlflow:read"), allowed_ips=("10.0.0.0/8",)
        ),
        "bob": make_key(settings, BOB, ("keys:manage", "mlflow:read")),
    }


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The one error shape, no stack trace, no key material."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == ERROR_FIELDS, body
    assert "Traceback" not in response.text and "hk_live_" not in response.text
    assert body["docs"].endswith("#" + body["error"].replace("_", "-"))
    if code is not None:
        assert body["error"] == code, body
    return body


def create(client: TestClient, caller: Caller, **fields: Any) -> Any:
    return client.post(
        f"{API}/keys", headers=caller.headers, json={"name": "made-by-test", **fields}
    )


# --- health, docs, whoami ----------------------------------------------------------------------


def test_health_needs_no_key(client):
    assert client.get(f"{API}/health").json() == {"status": "ok"}


def test_openapi_and_interactive_docs(client):
    spec = client.get(f"{API}/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        f"{API}/keys",
        f"{API}/keys/{{key_id}}",
        f"{API}/keys/{{key_id}}/rotate",
        f"{API}/keys/{{key_id}}/usage",
        f"{API}/audit",
        f"{API}/whoami",
    } <= paths
    assert "ErrorBody" in spec["components"]["schemas"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert client.get(f"{API}/docs").status_code == 200


@pytest.mark.parametrize("who", ["admin", "alice", "alice_mlflow", "bob"])
def test_whoami_for_any_valid_key(client, callers, who):
    caller = callers[who]
    body = client.get(f"{API}/whoami", headers=caller.headers).json()
    assert body["key_id"] == caller.key_id and body["user_email"] == caller.email


def test_whoami_with_x_api_key_header(client, callers):
    response = client.get(f"{API}/whoami", headers={"X-API-Key": callers["bob"].token})
    assert response.json()["key_id"] == callers["bob"].key_id


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_key"),
        ({"Authorization": "Bearer hk_live_nonsense"}, "malformed_key"),
        ({"Authorization": "Basic abc"}, "malformed_key"),
    ],
)
def test_bad_credentials_are_401_with_challenge(client, headers, code):
    response = client.get(f"{API}/keys", headers=headers)
    assert_error(response, 401, code)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_key_in_query_string_is_ignored(client, callers):
    response = client.get(f"{API}/whoami", params={"api_key": callers["alice"].token})
    assert_error(response, 401, "missing_key")


def test_two_credentials_are_refused(client, callers):
    headers = {**callers["alice"].headers, "X-API-Key": callers["alice"].token}
    assert_error(client.get(f"{API}/whoami", headers=headers), 401, "multiple_credentials")


def test_unknown_key_is_401(client, callers, settings):
    ghost = make_key(settings, "ghost@example.com", ("keys:manage",))
    wrong = ghost.token[:-8] + ("A" if ghost.token[-8] != "A" else "B") + ghost.token[-7:]
    assert (
        client.get(f"{API}/whoami", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
    )


# --- create ------------------------------------------------------------------------------------


def test_create_returns_key_once_with_no_store(client, callers):
    response = create(
        client,
        callers["alice"],
        scopes=["mlflow:read"],
        expires_in="30d",
        metadata={"team": "ml"},
        rate_limit_per_hour=100,
        burst=10,
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["key"]["user_email"] == ALICE and body["key"]["scopes"] == ["mlflow:read"]
    assert body["token"].startswith(body["key"]["display_prefix"] + "_")
    whoami = client.get(f"{API}/whoami", headers={"Authorization": f"Bearer {body['token']}"})
    assert whoami.json()["key_id"] == body["key"]["key_id"]
    shown = client.get(f"{API}/keys/{body['key']['key_id']}", headers=callers["alice"].headers)
    assert body["token"] not in shown.text


def test_create_needs_keys_manage(client, callers):
    assert_error(create(client, callers["alice_mlflow"]), 403, "forbidden")


def test_create_cannot_grant_more_scopes(client, callers):
    body = assert_error(create(client, callers["alice"], scopes=["mlflow:write"]), 403)
    assert "mlflow:write" in body["message"]
    assert create(client, callers["admin"], scopes=["mlflow:write", "admin"]).status_code == 201


def test_create_for_another_user_is_admin_only(client, callers):
    assert_error(create(client, callers["alice"], user=BOB), 403, "forbidden")
    response = create(client, callers["admin"], user=BOB)
    assert response.status_code == 201 and response.json()["key"]["user_email"] == BOB


def test_create_beyond_policy_expiry_is_422(client, callers):
    later = (datetime.now(UTC) + timedelta(days=500)).isoformat()
    assert_error(create(client, callers["alice"], expires_at=later), 422, "invalid_input")
    assert_error(create(client, callers["alice"], expires_in="999d"), 422, "invalid_input")


def test_restricted_caller_cannot_widen_networks(client, callers):
    caller = callers["alice_restricted"]
    inside = {**caller.headers, "X-Forwarded-For": "10.1.2.3"}
    outside = {**caller.headers, "X-Forwarded-For": "192.0.2.7"}
    assert_error(client.get(f"{API}/whoami", headers=outside), 403, "ip_not_allowed")

    def post(**fields: Any) -> Any:
        return client.post(f"{API}/keys", headers=inside, json={"name": "n", **fields})

    assert_error(post(), 403, "forbidden")  # unrestricted is wider than 10/8
    assert_error(post(allowed_ips=["192.168.0.0/24"]), 403, "forbidden")
    assert post(allowed_ips=["10.1.0.0/16"]).status_code == 201


@pytest.mark.parametrize(
    "fields",
    [
        {"scopes": ["root"]},
        {"allowed_ips": ["10.0.0.1/8"]},
        {"env": "prod"},
        {"name": ""},
        {"rate_limit_per_hour": -1},
        {"surprise": 1},
        {"name": "a\u0000b"},
        {"expires_in": "99999999999999d"},
        {"metadata": {"bad key!": "v"}},
    ],
)
def test_create_rejects_bad_input_with_422(client, callers, fields):
    assert_error(create(client, callers["admin"], **fields), 422, "invalid_input")


def test_malformed_json_is_400(client, callers):
    response = client.post(
        f"{API}/keys",
        content=b"{not json",
        headers={**callers["alice"].headers, "content-type": "application/json"},
    )
    assert_error(response, 400, "bad_request")


# --- list, show --------------------------------------------------------------------------------


def test_list_is_own_keys_paginated(client, callers):
    for _ in range(3):
        create(client, callers["bob"])
    first = client.get(f"{API}/keys", headers=callers["bob"].headers, params={"limit": 2}).json()
    assert len(first["items"]) == 2 and first["next_offset"] == 2
    rest = client.get(
        f"{API}/keys", headers=callers["bob"].headers, params={"limit": 2, "offset": 2}
    ).json()
    ids = [k["key_id"] for k in first["items"] + rest["items"]]
    assert len(ids) == len(set(ids)) >= 4
    assert {k["user_email"] for k in first["items"] + rest["items"]} == {BOB}


def test_list_other_user_is_admin_only(client, callers):
    assert_error(
        client.get(f"{API}/keys", headers=callers["alice"].headers, params={"user": BOB}),
        403,
        "forbidden",
    )
    listed = client.get(f"{API}/keys", headers=callers["admin"].headers, params={"user": BOB})
    assert listed.status_code == 200 and callers["bob"].key_id in listed.text


def test_show_matrix(client, callers):
    bob_key = callers["bob"].key_id
    assert client.get(f"{API}/keys/{bob_key}", headers=callers["bob"].headers).status_code == 200
    assert client.get(f"{API}/keys/{bob_key}", headers=callers["admin"].headers).status_code == 200
    assert_error(client.get(f"{API}/keys/{bob_key}", headers=callers["alice"].headers), 403)
    assert_error(client.get(f"{API}/keys/{bob_key}", headers=callers["alice_mlflow"].headers), 403)
    assert_error(
        client.get(f"{API}/keys/AAAAAAAAAAAA", headers=callers["admin"].headers), 404, "not_found"
    )
    assert_error(client.get(f"{API}/keys/not-an-id", headers=callers["admin"].headers), 422)


# --- update ------------------------------------------------------------------------------------


def test_update_fields(client, callers):
    key_id = create(client, callers["alice"]).json()["key"]["key_id"]
    response = client.patch(
        f"{API}/keys/{key_id}",
        headers=callers["alice"].headers,
        json={
            "name": "renamed",
            "rate_limit_per_hour": 50,
            "metadata": {"a": "b"},
            "expires_in": "10d",
        },
    )
    body = response.json()
    assert response.status_code == 200, body
    assert (body["name"], body["rate_limit_per_hour"], body["metadata"]) == (
        "renamed",
        50,
        {"a": "b"},
    )
    assert_error(
        client.patch(
            f"{API}/keys/{key_id}", headers=callers["alice"].headers, json={"scopes": ["admin"]}
        ),
        403,
        "forbidden",
    )
    assert_error(
        client.patch(f"{API}/keys/{key_id}", headers=callers["bob"].headers, json={"name": "x"}),
        403,
        "forbidden",
    )
    assert_error(
        client.patch(
            f"{API}/keys/{key_id}", headers=callers["alice"].headers, json={"allowed_ips": ["nope"]}
        ),
        422,
        "invalid_input",
    )


def test_update_revoked_key_is_409(client, callers):
    key_id = create(client, callers["alice"]).json()["key"]["key_id"]
    client.delete(f"{API}/keys/{key_id}", headers=callers["alice"].headers)
    assert_error(
        client.patch(f"{API}/keys/{key_id}", headers=callers["alice"].headers, json={"name": "x"}),
        409,
        "conflict",
    )


# --- revoke, rotate ----------------------------------------------------------------------------


def poll(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_revoke_is_idempotent_and_takes_effect(client, callers):
    created = create(client, callers["alice"], scopes=["keys:manage"]).json()
    headers = {"Authorization": f"Bearer {created['token']}"}
    assert client.get(f"{API}/whoami", headers=headers).status_code == 200
    key_id = created["key"]["key_id"]
    assert_error(client.delete(f"{API}/keys/{key_id}", headers=callers["bob"].headers), 403)
    first = client.delete(f"{API}/keys/{key_id}", headers=callers["alice"].headers)
    assert first.status_code == 204 and first.content == b""
    assert (
        client.delete(f"{API}/keys/{key_id}", headers=callers["alice"].headers).status_code == 204
    )
    assert poll(lambda: client.get(f"{API}/whoami", headers=headers).status_code == 401)
    assert_error(client.get(f"{API}/whoami", headers=headers), 401, "revoked")
    assert_error(client.delete(f"{API}/keys/AAAAAAAAAAAA", headers=callers["admin"].headers), 404)


def test_rotate_gives_new_key_and_grace(client, callers):
    created = create(client, callers["alice"]).json()
    key_id = created["key"]["key_id"]
    response = client.post(
        f"{API}/keys/{key_id}/rotate", headers=callers["alice"].headers, json={"grace": "1h"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["key"]["rotated_from"] == key_id and body["old_key"]["key_id"] == key_id
    old_end = datetime.fromisoformat(body["old_key"]["expires_at"])
    assert old_end <= datetime.now(UTC) + timedelta(hours=1, minutes=1)
    for token in (body["token"], created["token"]):
        assert (
            client.get(f"{API}/whoami", headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )
    assert_error(
        client.post(
            f"{API}/keys/{key_id}/rotate", headers=callers["alice"].headers, json={"grace": "soon"}
        ),
        422,
    )
    assert_error(client.post(f"{API}/keys/{key_id}/rotate", headers=callers["bob"].headers), 403)


def test_rotate_without_body_and_of_revoked_key(client, callers):
    key_id = create(client, callers["alice"]).json()["key"]["key_id"]
    assert (
        client.post(f"{API}/keys/{key_id}/rotate", headers=callers["alice"].headers).status_code
        == 200
    )
    client.delete(f"{API}/keys/{key_id}", headers=callers["alice"].headers)
    assert_error(
        client.post(f"{API}/keys/{key_id}/rotate", headers=callers["alice"].headers),
        409,
        "conflict",
    )


def test_cannot_rotate_a_more_powerful_key(client, callers):
    strong = create(client, callers["admin"], user=ALICE, scopes=["admin"]).json()
    assert_error(
        client.post(
            f"{API}/keys/{strong['key']['key_id']}/rotate", headers=callers["alice"].headers
        ),
        403,
        "forbidden",
    )


# --- usage -------------------------------------------------------------------------------------


def test_usage_sums_rollups(client, callers, settings):
    key_id = callers["bob"].key_id
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for route, status_class, count, errors in (
            ("/api/mlflow/runs", 2, 7, 0),
            ("/api/mlflow/runs", 5, 3, 3),
            ("/api/mlflow/exp", 2, 1, 0),
        ):
            conn.execute(
                "INSERT INTO api_key_usage (key_id, minute, route, method, status_class, count,"
                " errors, latency_sum_ms, latency_max_ms) VALUES (%s, %s, %s, 'GET', %s, %s, %s,"
                " %s, %s)",
                [key_id, minute, route, status_class, count, errors, count * 2.0, 4.0],
            )
    body = client.get(
        f"{API}/keys/{key_id}/usage", headers=callers["bob"].headers, params={"since": "24h"}
    ).json()
    assert (body["total"]["requests"], body["total"]["errors"]) == (11, 3)
    assert {g["label"]: g["requests"] for g in body["status_classes"]} == {"2xx": 8, "5xx": 3}
    assert body["endpoints"][0]["label"] == "GET /api/mlflow/runs"
    assert (body["endpoints"][0]["requests"], body["endpoints"][0]["errors"]) == (10, 3)
    assert body["total"]["latency_avg_ms"] == pytest.approx(2.0)
    assert_error(client.get(f"{API}/keys/{key_id}/usage", headers=callers["alice"].headers), 403)
    assert_error(
        client.get(
            f"{API}/keys/{key_id}/usage",
            headers=callers["bob"].headers,
            params={"since": "forever"},
        ),
        422,
    )


# --- audit -------------------------------------------------------------------------------------


def test_admins_disable_and_enable_users(client, callers, settings):
    victim = make_key(settings, "carol@example.com", ("keys:manage", "mlflow:read"))
    whoami = f"{API}/whoami"
    assert client.get(whoami, headers=victim.headers).status_code == 200
    forbidden = client.post(f"{API}/users/carol@example.com/disable", headers=victim.headers)
    assert_error(forbidden, 403, "forbidden")
    disabled = client.post(
        f"{API}/users/Carol@Example.com/disable",
        headers=callers["admin"].headers,
        json={"reason": "left"},
    )
    assert disabled.status_code == 200
    assert disabled.json()["email"] == "carol@example.com"
    assert disabled.json()["disabled_reason"] == "left" and disabled.json()["disabled_at"]
    deadline = time.monotonic() + 2  # the NOTIFY reaches this process's cache
    while client.get(whoami, headers=victim.headers).status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert_error(client.get(whoami, headers=victim.headers), 401, "user_disabled")
    enabled = client.post(f"{API}/users/carol@example.com/enable", headers=callers["admin"].headers)
    assert enabled.status_code == 200 and enabled.json()["disabled_at"] is None
    missing = client.post(
        f"{API}/users/nobody@example.com/enable", headers=callers["admin"].headers
    )
    assert_error(missing, 404, "not_found")


def test_audit_names_the_api_caller_and_is_admin_only(client, callers):
    caller = callers["alice"]
    key_id = create(client, caller).json()["key"]["key_id"]
    client.patch(f"{API}/keys/{key_id}", headers=caller.headers, json={"name": "audited"})
    rows = client.get(
        f"{API}/audit", headers=callers["admin"].headers, params={"key": key_id}
    ).json()["items"]
    assert rows and {row["actor"] for row in rows} == {f"api:{caller.key_id}"}
    filtered = client.get(
        f"{API}/audit",
        headers=callers["admin"].headers,
        params={"actor": f"api:{caller.key_id}", "since": "1h", "action": rows[0]["action"]},
    ).json()["items"]
    assert filtered and all(r["actor"] == f"api:{caller.key_id}" for r in filtered)
    assert_error(client.get(f"{API}/audit", headers=caller.headers), 403, "forbidden")
    assert_error(
        client.get(f"{API}/audit", headers=callers["admin"].headers, params={"since": "yesterday"}),
        422,
    )


# --- the error shape ---------------------------------------------------------------------------


def test_unknown_route_and_method_use_the_error_shape(client, callers):
    assert_error(client.get(f"{API}/nothing", headers=callers["admin"].headers), 404, "not_found")
    assert_error(
        client.put(f"{API}/keys", headers=callers["admin"].headers), 405, "method_not_allowed"
    )


def test_no_secret_in_any_response(client, callers):
    token = callers["alice"].token
    secret = token.rsplit("_", 1)[1]
    responses = [
        client.get(f"{API}/keys/{token}", headers=callers["alice"].headers),
        client.post(
            f"{API}/keys",
            headers=callers["alice"].headers,
            json={"name": token[:300], "scopes": [token]},
        ),
        client.get(f"{API}/keys", headers=callers["alice"].headers, params={"user": token}),
    ]
    for response in responses:
        assert response.status_code in {400, 403, 404, 422}, response.text
        assert secret[:6] not in response.text, response.text
        assert set(json.loads(response.text)) == ERROR_FIELDS
