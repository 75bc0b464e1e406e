"""Outages named correctly (issue 15), through real Envoy on both ext_authz transports: the
suite's MLflow stopped → 503 ``mlflow_unavailable`` ("your key is fine", its docs anchor,
``retry-after``) on MLflow's routes, the key check unaffected elsewhere, and ``hokusai doctor``
reporting the same. Authz stopped → ``unavailable`` is ``test_faults.py``'s.

Named to run after every other end-to-end test but the secrets sweep: it stops the shared MLflow,
and starts it again (same port) before it ends.
"""

from __future__ import annotations

import pytest
import requests

from cli.main import main
from cli.servers import MlflowServer
from tests.e2e.conftest import Gateway
from tests.support.authz import poll

SEARCH = "/api/mlflow/api/2.0/mlflow/experiments/search?max_results=1"
HEALTH = "/api/mlflow/health/mlflow"


def test_mlflow_down_is_named_not_the_key(
    gateways: dict[str, Gateway], mlflow_server: MlflowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    one = gateways["http"]
    _, key = one.service().create_key(user_email="outage@example.com", name="outage")
    bearer = {"Authorization": f"Bearer {key.token}"}

    def get(gateway: Gateway, path: str) -> requests.Response:
        return gateway.get(path, headers=bearer)

    for gateway in gateways.values():
        assert get(gateway, SEARCH).status_code == 200
    mlflow_server.stop()
    try:
        for gateway in gateways.values():
            for path in (SEARCH, HEALTH):
                answer = get(gateway, path)
                assert answer.status_code == 503, (gateway.transport, path, answer.text)
                body = answer.json()
                assert body["error"] == "mlflow_unavailable", (gateway.transport, path)
                assert "your key is fine" in body["message"]
                assert body["docs"].endswith("#mlflow-unavailable")
                assert answer.headers["retry-after"] == "1"
            whoami = gateway.get("/api/v1/auth/whoami", headers=bearer)
            assert whoami.status_code == 200  # the key check itself is unaffected
        capsys.readouterr()
        code = main(["doctor", "--url", one.mlflow_uri, "--key", key.token, "--ca", one.ca])
        out = capsys.readouterr().out
        assert code == 1
        assert f"FAIL mlflow: GET {HEALTH} → 503 mlflow_unavailable" in out, out
        assert "FAIL access: " in out and "503 mlflow_unavailable" in out, out
        assert "your key is fine" in out.lower()
        assert key.token[21:] not in out
    finally:
        mlflow_server.start()
    poll(lambda: get(one, SEARCH).status_code == 200, timeout=30, interval=0.5)
