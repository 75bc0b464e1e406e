"""hokusai.setup()'s decisions over a fake transport: remote, fallback, disabled, or the error —
and never a fallback for a refused key."""

from __future__ import annotations

import json
import logging
import os
import socket
import warnings
from pathlib import Path

import pytest

import hokusai
from hokusai import connection, errors, keyformat, mlflow_auth, tracking
from hokusai.gateway import Reply, Unreachable
from hokusai.settings import Settings
from hokusai.status import Identity, Mode
from tests.support.client import FakeTransport, Waits, fake_policy, isolated_state, json_reply

isolated = pytest.fixture(isolated_state)
pytestmark = pytest.mark.usefixtures("isolated")
KEY = keyformat.generate("live").token
URL = "https://gw.example:8443"
WHO = json.dumps(
    {
        "user_email": "ada@example.com",
        "key_id": KEY[8:20],
        "env": "live",
        "scopes": ["mlflow:read", "mlflow:write"],
        "expires_at": None,
    }
)


def answers(**overrides: list[object]) -> FakeTransport:
    routes: dict[str, list[object]] = {
        "/health": [Reply(200)],
        "/api/mlflow/health/mlflow": [Reply(200)],
        "/api/v1/auth/whoami": [json_reply(200, WHO)],
        "/api/mlflow/api/2.0/mlflow/experiments/search": [json_reply(200, "{}")],
    }
    routes.update({k.replace("__", "/"): v for k, v in overrides.items()})
    return FakeTransport(routes)  # type: ignore[arg-type]


def settings(**kwargs: object) -> Settings:
    return Settings.resolve(KEY, URL, **kwargs)  # type: ignore[arg-type]


def connect(transport: FakeTransport, **kwargs: object) -> hokusai.Status:
    return connection.connect(settings(**kwargs), transport, fake_policy(Waits()))


def test_remote(caplog: pytest.LogCaptureFixture) -> None:
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "1"  # the user's own value stays
    transport = answers()
    with caplog.at_level(logging.INFO, "hokusai"):
        status = connect(transport)
    assert status.mode is Mode.REMOTE and status.tracking_uri == URL + "/api/mlflow"
    assert status.identity == Identity(KEY[:20], "ada@example.com", ("mlflow:read", "mlflow:write"))
    assert status.warnings == () and status.local_store is None
    assert transport.paths() == [
        "/health",
        "/api/mlflow/health/mlflow",
        "/api/v1/auth/whoami",
        "/api/mlflow/api/2.0/mlflow/experiments/search?max_results=1",
    ]
    assert os.environ["MLFLOW_TRACKING_URI"] == URL + "/api/mlflow"
    assert os.environ["MLFLOW_TRACKING_AUTH"] == "hokusai"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
    assert (
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"]
        == tracking.REMOTE_DEFAULTS["MLFLOW_HTTP_REQUEST_TIMEOUT"]
    )
    assert "MLFLOW_TRACKING_TOKEN" not in os.environ  # the key is not copied anywhere
    assert mlflow_auth.current_key() == KEY
    assert "hokusai: remote mode" in caplog.text


@pytest.mark.parametrize(
    ("route", "reply", "cls", "reason"),
    [
        (
            "/api/v1/auth/whoami",
            json_reply(401, '{"error": "revoked"}'),
            errors.AuthenticationError,
            "revoked",
        ),
        (
            "/api/mlflow/api/2.0/mlflow/experiments/search",
            json_reply(403, '{"error": "ip_not_allowed"}'),
            errors.PermissionDeniedError,
            "ip_not_allowed",
        ),
        (
            "/api/v1/auth/whoami",
            json_reply(429, '{"error": "rate_limited"}', {"retry-after": "1"}),
            errors.RateLimitedError,
            "rate_limited",
        ),
        ("/health", Reply(404), errors.ConfigurationError, "not_found"),
    ],
)
def test_refusals_never_fall_back(
    route: str, reply: Reply, cls: type[errors.HokusaiError], reason: str, isolated: Path
) -> None:
    transport = answers()
    transport.answers[route] = [reply]
    with pytest.raises(cls) as caught:
        connect(transport, fallback=True, optional=True)
    assert caught.value.reason == reason
    assert not isolated.exists()  # no local store was made
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_unreachable_without_fallback_raises_after_the_retries() -> None:
    transport = answers(health=[Unreachable("connection refused")])
    transport.answers["/health"] = [Unreachable("connection refused")]
    with pytest.raises(errors.GatewayUnavailableError) as caught:
        connect(transport)
    assert caught.value.reason == "unreachable"
    assert transport.paths() == ["/health"] * 4


def test_fallback_is_loud_and_local(isolated: Path, caplog: pytest.LogCaptureFixture) -> None:
    transport = answers()
    transport.answers["/health"] = [Unreachable("connection refused")]
    with pytest.warns(errors.TrackingModeWarning, match="fallback mode") as seen:
        status = connect(transport, fallback=True)
    assert seen[0].filename == __file__  # attributed to the caller, not to the package
    assert status.mode is Mode.FALLBACK
    assert status.local_store == isolated / "hokusai" / "mlflow"
    assert "stay on this machine" in status.reason and "connection refused" in status.reason
    assert os.environ["MLFLOW_TRACKING_URI"].startswith("hokusai-local:///")
    assert "MLFLOW_TRACKING_AUTH" not in os.environ
    assert "WARNING" in caplog.text and "fallback mode" in caplog.text


def test_mlflow_down_is_named_and_falls_back() -> None:
    transport = answers()
    transport.answers["/api/mlflow/health/mlflow"] = [json_reply(503, '{"error": "unavailable"}')]
    with pytest.raises(errors.MLflowUnavailableError):
        connect(transport)
    with pytest.warns(errors.TrackingModeWarning):
        status = connect(transport, fallback=True)
    assert status.mode is Mode.FALLBACK and "MLflow behind the gateway" in status.reason


def test_optional_disables() -> None:
    transport = answers()
    transport.answers["/health"] = [json_reply(503, '{"error": "unavailable"}')]
    with pytest.warns(errors.TrackingModeWarning, match="disabled mode"):
        status = connect(transport, optional=True)
    assert status.mode is Mode.DISABLED and "no-ops" in status.reason
    manager = connection.manager_for(status, settings(optional=True))
    assert isinstance(manager, hokusai.DisabledExperimentManager)


def test_the_mode_is_announced_once() -> None:
    transport = answers()
    transport.answers["/health"] = [Unreachable("connection refused")]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        connect(transport, fallback=True)
        connect(transport, fallback=True)
    assert len([w for w in seen if issubclass(w.category, errors.TrackingModeWarning)]) == 1


def test_whoami_missing_is_a_warning_and_read_only_keys_are_named() -> None:
    transport = answers()
    transport.answers["/api/v1/auth/whoami"] = [Reply(404)]
    status = connect(transport)
    assert status.mode is Mode.REMOTE and status.identity == Identity(KEY[:20])
    assert any("identity and scopes are unknown" in w for w in status.warnings)
    read_only = json.loads(WHO) | {"scopes": ["mlflow:read"], "expires_at": "2000-01-01T00:00:00Z"}
    transport = answers()
    transport.answers["/api/v1/auth/whoami"] = [json_reply(200, json.dumps(read_only))]
    status = connect(transport)
    assert any("read-only" in w for w in status.warnings)
    assert any("expires 2000-01-01" in w for w in status.warnings)


def test_preflight_refuses_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    transport = answers()
    monkeypatch.setattr("hokusai.localstore.available", lambda: False)
    with pytest.raises(errors.ConfigurationError, match="SQL store"):
        connect(transport, fallback=True)
    monkeypatch.setattr(tracking, "plugin_installed", lambda: False)
    with pytest.raises(errors.ConfigurationError, match="not installed"):
        connect(transport)
    assert transport.calls == []


def test_insecure_tls_and_a_ca_contradict(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(Path(__import__("certifi").where()).read_text())
    os.environ["MLFLOW_TRACKING_INSECURE_TLS"] = "true"
    with pytest.raises(errors.ConfigurationError, match="MLFLOW_TRACKING_INSECURE_TLS"):
        connection.connect(Settings.resolve(KEY, URL, ca_cert=ca), answers())


def test_interfering_mlflow_settings_are_reported() -> None:
    os.environ.update(
        {
            "MLFLOW_TRACKING_TOKEN": "old",
            "MLFLOW_TRACKING_AUTH": "kubernetes",
            "MLFLOW_REGISTRY_URI": "https://elsewhere",
        }
    )
    status = connect(answers())
    text = " | ".join(status.warnings)
    assert "MLFLOW_TRACKING_TOKEN is set but not used" in text
    assert "MLFLOW_TRACKING_AUTH=kubernetes was replaced" in text
    assert "MLFLOW_REGISTRY_URI" in text
    assert os.environ["MLFLOW_TRACKING_AUTH"] == "hokusai"


def test_mock_mode_touches_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("mock mode opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    os.environ["HOKUSAI_MOCK_MODE"] = "true"
    status = hokusai.setup()
    assert status.mode is Mode.MOCK and status.local_store is not None
    manager = hokusai.experiment_manager()
    assert isinstance(manager, hokusai.MockExperimentManager)
    assert os.environ["MLFLOW_TRACKING_URI"] == status.tracking_uri


def test_the_factory_reuses_the_last_setup() -> None:
    transport = answers()
    status = connection.connect(settings(), transport, fake_policy(Waits()))
    calls = len(transport.calls)
    manager = hokusai.experiment_manager(KEY, URL)
    assert isinstance(manager, hokusai.ExperimentManager)
    assert manager.context.gateway == URL and manager.context.key == KEY[:20]
    assert len(transport.calls) == calls and status.remote
