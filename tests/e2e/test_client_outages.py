"""The Python client through outages of a real gateway of its own (Envoy, authz, keys API over the
shared Postgres, Redis and MLflow): Envoy stopped (fallback, optional, or the error after the
bounded retries), an outage in the middle of a run in optional mode, authz paused for a second."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import hokusai
from authz.management.service import KeyService
from authz.settings import Settings as ServerSettings
from authz.storage.db import connector
from cli.servers import ManagedProcess, MlflowServer, free_port
from cli.stack import LocalStack, StackOptions
from hokusai.gateway import SEARCH, Gateway, RequestsTransport
from hokusai.retry import RetryPolicy
from hokusai.settings import Settings
from tests.e2e.conftest import GENERATED
from tests.support.client import RealWaits, isolated_state

isolated = pytest.fixture(isolated_state)
pytestmark = pytest.mark.usefixtures("isolated")


@dataclass
class Private:
    stack: LocalStack
    service: KeyService
    token: str

    @property
    def url(self) -> str:
        return self.stack.record.gateway_url

    @property
    def ca(self) -> str:
        return self.stack.record.ca_cert

    def part(self, name: str) -> ManagedProcess:
        return next(p for p in self.stack.parts if p.name == name)

    def args(self) -> dict[str, Any]:
        return {"api_key": self.token, "url": self.url, "ca_cert": self.ca}


@pytest.fixture
def private(
    tmp_path: Path, e2e_database_url: str, e2e_redis_url: str, mlflow_server: MlflowServer
) -> Iterator[Private]:
    settings = ServerSettings(bcrypt_cost=4, database_url=e2e_database_url, redis_url=e2e_redis_url)
    stack = LocalStack(
        StackOptions(
            data_dir=tmp_path / "stack",
            https_port=free_port(),
            http_port=free_port(),
            mlflow_url=mlflow_server.url,
            transport="http",
        ),
        settings,
    )
    stack.start()
    service = KeyService(connector(e2e_database_url), settings, "test:client")
    _view, new = service.create_key(
        user_email="outage@example.com", name="outage", scopes=["mlflow:read", "mlflow:write"]
    )
    try:
        yield Private(stack, service, new.token)
    finally:
        stack.stop()
        for log in (tmp_path / "stack").rglob("*.log"):
            text = log.read_text(errors="replace")
            assert not [t for t in GENERATED if t[21:64] in text], log


@contextmanager
def paused(part: ManagedProcess, seconds: float) -> Iterator[None]:
    """SIGSTOP the part's process group now, SIGCONT after ``seconds`` (and at the latest when
    the block ends)."""
    assert part.pid is not None
    os.killpg(part.pid, signal.SIGSTOP)
    timer = threading.Timer(seconds, os.killpg, (part.pid, signal.SIGCONT))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        os.killpg(part.pid, signal.SIGCONT)


def retries_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "hokusai.gateway" and "failed" in r.getMessage()
    ]


def test_gateway_stopped(
    private: Private, isolated: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow import MlflowClient

    private.part("envoy").stop()
    with (
        caplog.at_level(logging.DEBUG, "hokusai.gateway"),
        pytest.raises(hokusai.GatewayUnavailableError) as caught,
    ):
        hokusai.setup(**private.args())
    assert caught.value.reason == "unreachable" and "connection refused" in caught.value.message
    assert len(retries_logged(caplog)) == RetryPolicy().attempts - 1  # then it gave up

    with pytest.warns(hokusai.TrackingModeWarning, match="fallback mode"):
        status = hokusai.setup(**private.args(), fallback=True)
    assert status.mode is hokusai.Mode.FALLBACK
    assert status.local_store == isolated / "hokusai" / "mlflow"
    assert "stay on this machine" in status.reason
    manager = hokusai.experiment_manager(**private.args(), fallback=True)
    with manager.start_run("offline") as run:
        run.log_param("alpha", 0.5)
        run.log_metric("rmse", 0.25)
        run.log_text("local", "notes.txt")
    local = MlflowClient(tracking_uri=f"sqlite:///{status.local_store / 'mlflow.db'}")
    stored = local.get_run(run.id)
    assert stored.data.params == {"alpha": "0.5"} and stored.data.metrics == {"rmse": 0.25}
    assert list(status.local_store.rglob("notes.txt"))

    with pytest.warns(hokusai.TrackingModeWarning, match="disabled mode"):
        status = hokusai.setup(**private.args(), optional=True)
    assert status.mode is hokusai.Mode.DISABLED
    manager = hokusai.experiment_manager(**private.args(), optional=True)
    with pytest.warns(hokusai.TrackingModeWarning) as seen:
        with manager.start_run("nowhere") as run:
            run.log_metric("rmse", 0.1)
        manager.register_model(run.id, "model", "nowhere")
    assert len(seen) == 1


def test_an_outage_mid_run(private: Private) -> None:
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"  # the user's own: fail fast here
    assert hokusai.setup(**private.args(), optional=True).remote
    optional = hokusai.experiment_manager(**private.args(), optional=True)
    assert isinstance(optional, hokusai.ExperimentManager)
    strict = hokusai.ExperimentManager(
        optional.client.tracking_uri, context=optional.context, ca_cert=private.ca
    )
    experiment = strict.get_or_create_experiment("mid-run")
    with pytest.warns(hokusai.TrackingModeWarning) as seen, optional.start_run("mid-run") as run:
        run.log_param("before", "outage")
        private.part("envoy").stop()
        run.log_metric("after", 1.0)  # unavailable: from here on, no-ops
        run.log_metric("again", 2.0)
    assert len(seen) == 1 and "tracking is disabled" in str(seen[0].message)
    assert optional.disabled is not None
    with pytest.raises(hokusai.GatewayUnavailableError) as caught:
        strict.create_run(experiment)  # without optional mode the outage is an error
    assert caught.value.reason == "unreachable"


def test_authz_paused_for_a_second(private: Private, caplog: pytest.LogCaptureFixture) -> None:
    authz = private.part("authz")
    waits = RealWaits()
    gateway = Gateway(
        Settings.resolve(**private.args()), RequestsTransport(), RetryPolicy(sleep=waits.sleep)
    )
    with paused(authz, 1.2):
        reply = gateway.get(SEARCH, authenticated=True)
    assert reply.status == 200
    assert waits.slept and all(s == 1.0 for s in waits.slept)  # Envoy's 503 said retry-after 1

    hokusai.setup(**private.args())
    manager = hokusai.experiment_manager(**private.args())
    experiment = manager.get_or_create_experiment("paused")
    with caplog.at_level(logging.DEBUG, "urllib3.connectionpool"), paused(authz, 1.2):
        run_id = manager.create_run(experiment)  # MLflow's own bounded retries
    assert manager.get_run(run_id).status == "RUNNING"
    assert "Retry:" in caplog.text
