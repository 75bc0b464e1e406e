"""How MLflow is configured: the auth plugin MLflow finds by entry point, the variables setup()
writes, and the probe environment that leaves the process as it was."""

from __future__ import annotations

import os

import pytest
import requests

from hokusai import keyformat, mlflow_auth, tracking
from hokusai.settings import Settings
from tests.support.client import isolated_state

isolated = pytest.fixture(isolated_state)
pytestmark = pytest.mark.usefixtures("isolated")
KEY = keyformat.generate("live").token


def test_mlflow_finds_the_provider_by_entry_point() -> None:
    from mlflow.tracking.request_auth.registry import fetch_auth

    assert tracking.plugin_installed()
    auth = fetch_auth("hokusai")
    assert isinstance(auth, mlflow_auth.BearerKey)


def test_the_key_wins_over_basic_auth_and_stale_tokens() -> None:
    mlflow_auth.use_key(KEY)
    prepared = requests.Request(
        "GET", "https://gw/x", headers={"Authorization": "Basic dTpw"}, auth=mlflow_auth.BearerKey()
    ).prepare()
    assert prepared.headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(mlflow_auth.BearerKey())


def test_without_setup_the_provider_reads_the_variable() -> None:
    assert mlflow_auth.current_key() is None
    os.environ["HOKUSAI_API_KEY"] = f" {KEY}\n"
    assert mlflow_auth.current_key() == KEY
    mlflow_auth.use_key("hk_test_other")
    assert mlflow_auth.current_key() == "hk_test_other"


def test_remote_environment_restores_everything() -> None:
    os.environ["MLFLOW_TRACKING_AUTH"] = "kubernetes"
    mlflow_auth.use_key(None)
    before = dict(os.environ)
    settings = Settings(url="https://gw", key=KEY, ca_cert="/ca.pem")
    with tracking.remote_environment(settings):
        assert os.environ["MLFLOW_TRACKING_AUTH"] == "hokusai"
        assert os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] == "/ca.pem"
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "4"
        assert mlflow_auth.current_key() == KEY
    assert dict(os.environ) == before and mlflow_auth.configured_key() is None


def test_local_mode_removes_only_its_own_auth(tmp_path) -> None:
    os.environ["MLFLOW_TRACKING_AUTH"] = "hokusai"
    mlflow_auth.use_key(KEY)
    uri = tracking.use_local(tmp_path / "store")
    assert uri.startswith("hokusai-local:///") and (tmp_path / "store").is_dir()
    assert "MLFLOW_TRACKING_AUTH" not in os.environ and mlflow_auth.configured_key() is None
    os.environ["MLFLOW_TRACKING_AUTH"] = "kubernetes"
    tracking.use_local(tmp_path / "store")
    assert os.environ["MLFLOW_TRACKING_AUTH"] == "kubernetes"
