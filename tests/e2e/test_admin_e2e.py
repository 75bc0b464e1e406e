"""Issue 15 through real Envoy, on both ext_authz transports: who tried what, central policy,
outages named correctly.

* A revoked key used three times, an IP-refused key and a wrong secret appear in
  ``hokusai auth events``, in the REST API's event endpoints and in the key's usage (refused by
  reason from the events; the 4xx responses from Envoy's access log, which now names the key);
  Envoy's stdout access log carries the key id and the reason. No secret anywhere (the sweep in
  ``test_zz_no_secret_anywhere.py`` covers the new tables too).
* A policy set centrally — through the REST API — refuses an over-long key, and refuses an
  existing key past the inactivity limit within a second, through Envoy.

Outages named correctly (MLflow stopped behind Envoy) are ``test_zy_outages.py``: it stops the
suite's MLflow, so it runs last but one.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import psycopg
import pytest

from authz.keys import format as keys
from authz.management.policy import PolicyUpdate
from cli.main import main
from tests.e2e.conftest import Gateway
from tests.support.authz import poll

SEARCH = "/api/mlflow/api/2.0/mlflow/experiments/search?max_results=1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cli_json(capsys: pytest.CaptureFixture[str], gateway: Gateway, *argv: str) -> Any:
    capsys.readouterr()
    code = main([*argv, "--database-url", gateway.database_url, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_refused_keys_are_in_events_usage_and_envoys_log(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    service = gateway.service()
    email = f"intruder-{gateway.transport}@example.com"
    revoked, revoked_key = service.create_key(user_email=email, name="revoked")
    fenced, fenced_key = service.create_key(
        user_email=email, name="fenced", allowed_ips=["10.0.0.0/8"]
    )
    good, good_key = service.create_key(user_email=email, name="good")
    service.revoke_key(revoked.key_id)
    wrong = keys.generate("live", key_id=good.key_id)  # the right id, another secret
    for _ in range(3):
        assert gateway.get(SEARCH, headers=bearer(revoked_key.token)).status_code == 401
    assert gateway.get(SEARCH, headers=bearer(fenced_key.token)).status_code == 403
    assert gateway.get(SEARCH, headers=bearer(wrong.token)).status_code == 401
    assert gateway.get(SEARCH, headers=bearer(good_key.token)).status_code == 200

    def events(key_id: str) -> list[dict[str, Any]]:
        return list(cli_json(capsys, gateway, "auth", "events", "--key", key_id)["events"])

    def counted(found: list[dict[str, Any]]) -> dict[str, int]:
        totals: dict[str, int] = {}
        for event in found:
            totals[event["reason"]] = totals.get(event["reason"], 0) + event["count"]
        return totals

    poll(lambda: counted(events(revoked.key_id)) == {"revoked": 3}, timeout=10, interval=0.2)
    assert counted(events(fenced.key_id)) == {"ip_not_allowed": 1}
    assert counted(events(good.key_id)) == {"invalid_secret": 1}
    first = events(revoked.key_id)[0]
    assert first["user_email"] == email and first["method"] == "GET"
    assert first["route"] == "/api/mlflow/api/2.0/mlflow/experiments/search"
    assert ipaddress.ip_address(first["client_address"])  # the address Envoy trusted

    # The REST API: the key's events (its owner's admin key) and the admin-wide list.
    _, admin = service.create_key(user_email=email, name="admin", scopes=["admin"])
    own = gateway.get(f"/api/v1/auth/keys/{revoked.key_id}/events", headers=bearer(admin.token))
    assert own.status_code == 200, own.text
    assert counted(own.json()["items"]) == {"revoked": 3}
    wide = gateway.get(
        "/api/v1/auth/events",
        params={"user": email, "reason": "ip_not_allowed"},
        headers=bearer(admin.token),
    )
    assert [e["key_id"] for e in wide.json()["items"]] == [fenced.key_id]

    # Usage: refused by reason (events) and the 4xx Envoy's access log now attributes to the key.
    def usage() -> dict[str, Any]:
        return dict(cli_json(capsys, gateway, "auth", "usage", revoked.key_id, "--since", "1h"))

    poll(lambda: (usage()["total"] or {}).get("requests") == 3, timeout=10, interval=0.3)
    report = usage()
    assert report["denials"] == {"revoked": 3}
    assert [(s["label"], s["requests"]) for s in report["status_classes"]] == [("4xx", 3)]
    rest = gateway.get(f"/api/v1/auth/keys/{revoked.key_id}/usage", headers=bearer(admin.token))
    assert rest.json()["denials"] == {"revoked": 3}

    # Envoy's own access log names the key and the reason of each denial.
    log = gateway.data_dir / "logs" / "envoy.log"

    def logged() -> list[dict[str, Any]]:
        lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
        return [x for x in lines if x.get("key_id") == fenced.key_id]

    poll(lambda: bool(logged()), timeout=10, interval=0.3)
    assert logged()[0]["reason"] == "ip_not_allowed" and logged()[0]["status"] == 403


def test_central_policy_through_the_api_and_envoy(gateway: Gateway) -> None:
    service = gateway.service()
    email = f"policy-{gateway.transport}@example.com"
    _, admin = service.create_key(user_email=email, name="admin", scopes=["admin"])
    idle, idle_key = service.create_key(user_email=email, name="idle")
    assert gateway.get(SEARCH, headers=bearer(idle_key.token)).status_code == 200
    with psycopg.connect(gateway.database_url) as conn:  # made long ago, unused for 90 days
        conn.execute(
            "UPDATE api_keys SET created_at = now() - interval '200 days',"
            " last_used_at = now() - interval '90 days', expires_at = NULL WHERE key_id = %s",
            [idle.key_id],
        )
    poll(lambda: gateway.get(SEARCH, headers=bearer(idle_key.token)).status_code == 200, 5)
    try:
        put = gateway.put(
            "/api/v1/auth/policy",
            json={"max_lifetime": "365d", "inactivity_expiry": "60d"},
            headers=bearer(admin.token),
        )
        assert put.status_code == 200, put.text
        assert put.json()["inactivity_expiry"] == 60 * 86400

        def refused() -> bool:
            answer = gateway.get(SEARCH, headers=bearer(idle_key.token))
            return answer.status_code == 401 and answer.json()["error"] == "inactive"

        assert poll(refused, timeout=1.0, interval=0.05) <= 1.0
        too_long = gateway.post(
            "/api/v1/auth/keys",
            json={"name": "long", "expires_in": "400d"},
            headers=bearer(admin.token),
        )
        assert too_long.status_code == 422
        assert "maximum key lifetime of 365d" in too_long.json()["message"]
    finally:
        service.set_policy(PolicyUpdate(max_lifetime="off", inactivity_expiry="off"))
