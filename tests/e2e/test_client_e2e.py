"""The Python client against the real gateway (Envoy, authz, keys API, Postgres, Redis, MLflow):
the key and URL alone, refused keys that never fall back, rate limits only after Retry-After was
honoured, a proxy's CA bundle that must not win, and hokusai-doctor with its write probe."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import hokusai
from cli.tls import ensure_certificates
from hokusai import connection
from hokusai.doctor import cli as doctor_cli
from hokusai.gateway import SEARCH, Gateway, RequestsTransport
from hokusai.retry import RetryPolicy
from hokusai.settings import Settings
from tests.e2e.conftest import Gateway as Stack
from tests.support.authz import poll
from tests.support.client import RealWaits, isolated_state

ROOT = Path(__file__).resolve().parents[2]
FLOW = Path(__file__).with_name("client_flow.py")
RW = ["mlflow:read", "mlflow:write"]
isolated = pytest.fixture(isolated_state)
pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture
def one(gateways: dict[str, Stack]) -> Stack:
    """The client does not depend on the ext_authz transport: one gateway is enough."""
    return gateways["http"]


def new_key(gateway: Stack, scopes: list[str] = RW, **limits: int) -> str:
    _view, new = gateway.service().create_key(
        user_email="client@example.com",
        name="client",
        scopes=scopes,
        **limits,  # type: ignore[arg-type]
    )
    return new.token


def secret_of(token: str) -> str:
    return token[21:64]


def test_the_key_and_the_url_are_enough(one: Stack) -> None:
    token = new_key(one)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOKUSAI_", "MLFLOW_"))}
    env.update(
        {"HOKUSAI_API_KEY": token, "HOKUSAI_GATEWAY_URL": one.url, "HOKUSAI_CA_CERT": one.ca}
    )
    done = subprocess.run(
        [sys.executable, str(FLOW)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert secret_of(token) not in done.stdout + done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["mode"] == "remote" and seen["user"] == "client@example.com"
    assert seen["tracking_uri"] == one.mlflow_uri
    assert seen["params"] == {"alpha": "0.5"} and seen["metric"] == pytest.approx(1 / 3)
    assert seen["artifacts"] == ["weights.bin"] and seen["artifact_intact"] is True
    assert (seen["version"], seen["versions"]) == ("1", 1)
    assert seen["managed"] == {"layers": "3"} and seen["status"] == "FINISHED"


def test_a_revoked_key_never_falls_back(one: Stack, isolated: Path) -> None:
    token = new_key(one)
    one.service().revoke_key(token[8:20], reason="client test")

    def refused() -> bool:
        connection._ANNOUNCED.clear()
        try:
            hokusai.setup(token, one.url, ca_cert=one.ca, fallback=True, optional=True)
        except hokusai.AuthenticationError as exc:
            assert exc.reason == "revoked" and exc.status == 401
            assert exc.docs_url == f"{one.url}/docs/errors#revoked"
            assert secret_of(token) not in str(exc) + repr(exc)
            return True
        return False

    poll(refused, timeout=5, interval=0.2)  # revocation reaches every cache within a second
    assert not isolated.exists()  # no local store was ever made


def test_a_read_only_key_is_refused_writes_with_the_scope_advice(one: Stack) -> None:
    token = new_key(one, ["mlflow:read"])
    status = hokusai.setup(token, one.url, ca_cert=one.ca)
    assert status.remote and any("read-only" in w for w in status.warnings)
    manager = hokusai.experiment_manager(token, one.url, ca_cert=one.ca)
    with pytest.raises(hokusai.PermissionDeniedError) as caught:
        manager.get_or_create_experiment("client-read-only")
    error = caught.value
    assert error.reason == "insufficient_scope" and error.status == 403
    assert any("mlflow:write" in step for step in error.steps)
    assert type(error.__cause__).__name__ == "RestException"  # MLflow's, kept as the cause


# --- rate limits ------------------------------------------------------------------------------


def limited_gateway(one: Stack, token: str, waits: RealWaits, attempts: int = 3) -> Gateway:
    settings = Settings.resolve(token, one.url, ca_cert=one.ca)
    return Gateway(settings, RequestsTransport(), RetryPolicy(attempts=attempts, sleep=waits.sleep))


def test_rate_limited_only_after_retry_after_was_honoured(one: Stack) -> None:
    """Burst 2, one request per second. Another process shares the key: right after each wait it
    takes the token the wait was for — so the wait was long enough, and the client still ends
    with RateLimitedError once its attempts are spent."""
    token = new_key(one, rate_limit_per_hour=3600, burst=2)
    search = one.url + SEARCH
    competitor: list[int] = []

    def other_process() -> None:
        competitor.append(
            requests.get(
                search, verify=one.ca, timeout=10, headers={"authorization": f"Bearer {token}"}
            ).status_code
        )

    waits = RealWaits(after_sleep=other_process)
    gateway = limited_gateway(one, token, waits)
    assert [gateway.get(SEARCH, authenticated=True).status for _ in range(2)] == [200, 200]
    with pytest.raises(hokusai.RateLimitedError) as caught:
        connection.check_access(gateway)
    assert caught.value.reason == "rate_limited" and caught.value.retry_after is not None
    assert len(waits.slept) == 2 and all(1.0 <= s <= 2.0 for s in waits.slept)
    assert waits.slept == [float(int(s)) for s in waits.slept]  # whole seconds: the header's
    assert competitor == [200, 200]  # each wait was enough for one request


def test_a_retry_after_beyond_the_budget_raises_at_once(one: Stack) -> None:
    token = new_key(one, rate_limit_per_hour=60, burst=1)
    waits = RealWaits()
    gateway = limited_gateway(one, token, waits)
    assert gateway.get(SEARCH, authenticated=True).status == 200
    with pytest.raises(hokusai.RateLimitedError) as caught:
        connection.check_access(gateway)
    assert waits.slept == []  # never retried sooner than told
    assert caught.value.retry_after is not None and caught.value.retry_after > 20


def test_mlflow_rides_out_a_short_limit(one: Stack, caplog: pytest.LogCaptureFixture) -> None:
    token = new_key(one, rate_limit_per_hour=3600, burst=2)
    hokusai.setup(token, one.url, ca_cert=one.ca)
    manager = hokusai.experiment_manager(token, one.url, ca_cert=one.ca)
    with (
        caplog.at_level(logging.DEBUG, "urllib3.connectionpool"),
        manager.start_run("client-rate-limited") as run,
    ):
        for step in range(3):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
    assert manager.get_run(run.id).metrics == {"loss": pytest.approx(1 / 3)}
    assert "Retry:" in caplog.text  # MLflow's own retries waited out the 429s


def test_mlflow_giving_up_on_429_is_rate_limited(one: Stack) -> None:
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"  # the user's own setting wins
    token = new_key(one, rate_limit_per_hour=60, burst=2)
    hokusai.setup(token, one.url, ca_cert=one.ca)  # one token: the access check
    manager = hokusai.experiment_manager(token, one.url, ca_cert=one.ca)
    with pytest.raises(hokusai.RateLimitedError) as caught:
        for _ in range(3):
            manager.get_or_create_experiment("client-giving-up")
    assert caught.value.status == 429
    assert type(caught.value.__cause__).__name__ == "MlflowException"


# --- a proxy's CA bundle ----------------------------------------------------------------------


def test_a_wrong_requests_ca_bundle_does_not_win(one: Stack, tmp_path: Path) -> None:
    wrong = str(ensure_certificates(tmp_path / "proxy").ca_cert)
    os.environ["REQUESTS_CA_BUNDLE"] = os.environ["CURL_CA_BUNDLE"] = wrong
    session = requests.Session()  # the trap: a session's verify loses to the variables
    session.verify = one.ca
    with pytest.raises(requests.exceptions.SSLError):
        session.get(one.url + "/health", timeout=10)
    token = new_key(one)
    status = hokusai.setup(token, one.url, ca_cert=one.ca)
    assert status.remote
    manager = hokusai.experiment_manager(token, one.url, ca_cert=one.ca)
    with manager.start_run("client-proxy-ca") as run:
        run.log_param("verified", "yes")
    assert manager.get_run(run.id).params == {"verified": "yes"}


# --- hokusai-doctor --------------------------------------------------------------------------


def test_doctor_all_ok_with_the_write_probe(one: Stack) -> None:
    token = new_key(one)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOKUSAI_", "MLFLOW_"))}
    env.update(
        {"HOKUSAI_API_KEY": token, "HOKUSAI_GATEWAY_URL": one.url, "HOKUSAI_CA_CERT": one.ca}
    )
    doctor = str(Path(sys.executable).with_name("hokusai-doctor"))
    done = subprocess.run(
        [doctor, "--write", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert secret_of(token) not in done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert [c["check"] for c in report["checks"]] == [
        "url",
        "dns",
        "tcp",
        "tls",
        "gateway",
        "mlflow",
        "key",
        "access",
        "scopes",
        "experiment",
        "run",
        "log",
        "upload",
        "download",
        "delete",
    ]
    assert all(c["status"] == "ok" for c in report["checks"]), report
    from mlflow import MlflowClient

    hokusai.setup(token, one.url, ca_cert=one.ca)
    client = MlflowClient()
    experiment = client.get_experiment_by_name("hokusai-doctor")
    assert experiment is not None
    assert client.search_runs([experiment.experiment_id]) == []  # the probe's run was deleted


def test_doctor_write_with_a_read_only_key(one: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    token = new_key(one, ["mlflow:read"])
    code = doctor_cli.main(["--url", one.url, "--key", token, "--ca", one.ca, "--write"])
    out = capsys.readouterr().out
    assert code == 1 and secret_of(token) not in out
    failed = [line for line in out.splitlines() if line.startswith("FAIL ")]
    assert len(failed) == 1 and "insufficient_scope" in failed[0], out
    following = out.splitlines()[out.splitlines().index(failed[0]) + 1]
    assert "mlflow:write" in following
    assert "skip delete: no run was created" in out or "ok delete" in out


def test_doctor_revoked_and_wrong_ca(
    one: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = new_key(one)
    one.service().revoke_key(token[8:20], reason="doctor test")
    poll(
        lambda: (
            doctor_cli.main(["--url", one.url, "--key", token, "--ca", one.ca]) == 1
            and "401 revoked" in capsys.readouterr().out
        ),
        timeout=5,
        interval=0.2,
    )
    other = ensure_certificates(tmp_path / "other").ca_cert
    assert doctor_cli.main(["--url", one.url, "--key", token, "--ca", str(other)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL tls: certificate not trusted by the CA file {other}" in out
    assert "--ca" in out and secret_of(token) not in out
