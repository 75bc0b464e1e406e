"""The ops CLI runs in a shell that has the Python client's variables exported (the data
scientist's shell is often the operator's): it skips them (issue 14)."""

from __future__ import annotations

import pytest

from cli.main import main
from hokusai import keyformat


def test_the_ops_cli_ignores_the_client_variables(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOKUSAI_API_KEY", keyformat.generate("live").token)
    monkeypatch.setenv("HOKUSAI_GATEWAY_URL", "https://gw.example.com")
    monkeypatch.setenv("HOKUSAI_MOCK_MODE", "true")
    monkeypatch.setenv("HOKUSAI_MLFLOW_FALLBACK", "true")
    monkeypatch.setenv("HOKUSAI_MLFLOW_OPTIONAL", "true")
    assert main(["auth", "list-keys", "--database-url", database_url]) == 0
