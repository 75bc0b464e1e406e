"""The server side of the Python client (issue 14) through the real gateway: gateway bodies speak
MLflow, so the stock client shows the right code; the old /mlflow/ path reaches MLflow (a 308
the stock client follows, writes included)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import requests

from tests.e2e.conftest import Gateway

SEARCH = "/api/mlflow/api/2.0/mlflow/experiments/search?max_results=1"


@pytest.fixture
def one(gateways: dict[str, Gateway]) -> Gateway:
    return gateways["http"]


def key(gateway: Gateway, scopes: list[str], **limits: int) -> tuple[str, str]:
    view, new = gateway.service().create_key(
        user_email="phase2@example.com",
        name="phase2",
        scopes=scopes,
        **limits,  # type: ignore[arg-type]
    )
    return view.key_id, new.token


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("no key", 401, "UNAUTHENTICATED"),
        ("read-only write", 403, "PERMISSION_DENIED"),
        ("over the burst", 429, "RESOURCE_EXHAUSTED"),
    ],
)
def test_denial_bodies_on_mlflow_routes_carry_the_mlflow_error_code(
    one: Gateway, case: str, status: int, code: str
) -> None:
    headers: dict[str, str] = {}
    method, path = "GET", SEARCH
    if case == "read-only write":
        headers = {"authorization": f"Bearer {key(one, ['mlflow:read'])[1]}"}
        method, path = "POST", "/api/mlflow/api/2.0/mlflow/experiments/create"
    elif case == "over the burst":
        _, token = key(one, ["mlflow:read"], burst=1, rate_limit_per_hour=60)
        headers = {"authorization": f"Bearer {token}"}
        requests.get(one.url + SEARCH, headers=headers, verify=one.ca, timeout=10)
    answer = requests.request(
        method,
        one.url + path,
        headers=headers,
        verify=one.ca,
        timeout=10,
        json={"name": "phase2"} if method == "POST" else None,
    )
    body = answer.json()
    assert answer.status_code == status
    assert body["error_code"] == code and body["error"]  # both: the one shape stays one shape


STOCK = textwrap.dedent("""
    import json, mlflow
    from mlflow.exceptions import MlflowException
    try:
        mlflow.MlflowClient().{call}
    except MlflowException as exc:
        print(json.dumps({{"error_code": exc.error_code, "message": exc.message}}))
""")


def run_stock_client(gateway: Gateway, token: str, program: str, uri: str | None = None) -> str:
    """``program`` in a fresh interpreter configured like a stock MLflow client (no retries)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOKUSAI_", "MLFLOW_"))}
    env.update(
        {
            "MLFLOW_TRACKING_URI": uri or gateway.mlflow_uri,
            "MLFLOW_TRACKING_TOKEN": token,
            "MLFLOW_TRACKING_SERVER_CERT_PATH": gateway.ca,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert token[21:] not in done.stdout + done.stderr
    return done.stdout


def stock_client(gateway: Gateway, token: str, call: str) -> str:
    return run_stock_client(gateway, token, STOCK.format(call=call))


def test_the_stock_client_shows_unauthenticated_and_permission_denied(one: Gateway) -> None:
    key_id, revoked = key(one, ["mlflow:read", "mlflow:write"])
    one.service().revoke_key(key_id, reason="phase 2")
    shown = stock_client(one, revoked, "search_experiments()")
    assert '"error_code": "UNAUTHENTICATED"' in shown
    _, read_only = key(one, ["mlflow:read"])
    shown = stock_client(one, read_only, "create_experiment('phase2-read-only')")
    assert '"error_code": "PERMISSION_DENIED"' in shown


def test_the_old_mlflow_path_reaches_mlflow(one: Gateway) -> None:
    _, token = key(one, ["mlflow:read"])
    old = one.url + "/mlflow/api/2.0/mlflow/experiments/search?max_results=1"
    answer = requests.get(
        old, headers={"authorization": f"Bearer {token}"}, verify=one.ca, timeout=10
    )
    assert answer.status_code == 200 and "experiments" in answer.json()
    # Without a key too: a 308 decided before authentication, the bare path as well, query kept.
    for old, new in (("/mlflow/", "/api/mlflow/"), ("/mlflow?x=1", "/api/mlflow/?x=1")):
        moved = requests.get(one.url + old, verify=one.ca, timeout=10, allow_redirects=False)
        assert moved.status_code == 308 and moved.headers["location"] == one.url + new


OLD_PATH_RUN = textwrap.dedent("""
    import mlflow
    mlflow.set_experiment("phase2-old-path")  # POST experiments/create, through the 308
    with mlflow.start_run() as run:
        mlflow.log_param("p", "1")
        mlflow.log_metric("m", 2.0)
        mlflow.log_text("through the old path", "note.txt")  # a PUT with a body
    got = mlflow.MlflowClient().get_run(run.info.run_id)
    text = mlflow.artifacts.load_text(run.info.artifact_uri + "/note.txt")
    print(got.data.params["p"], got.data.metrics["m"], text)
""")


def test_the_stock_client_follows_the_redirect_for_writes(one: Gateway) -> None:
    """A tracking URI on the old path: the stock MLflow client (requests) repeats each POST and
    PUT, body and Authorization included, at /api/mlflow/… — the 308 is enough, no route needed."""
    _, token = key(one, ["mlflow:read", "mlflow:write"])
    printed = run_stock_client(one, token, OLD_PATH_RUN, uri=one.url + "/mlflow")
    last = printed.strip().splitlines()[-1]  # MLflow prints its "View run" links first
    assert last.split() == ["1", "2.0", "through", "the", "old", "path"]
