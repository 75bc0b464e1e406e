"""The server side of the Python client (issue 14): the server uses the client's code instead of
its own — one key format, the client's variables skipped by the ops CLI's settings, one doctor —
Envoy's own replies carry MLflow's error codes, and the README starts with the client."""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest

from hokusai import doctor as client_doctor
from hokusai import keyformat

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ENV = {
    "HOKUSAI_API_KEY": keyformat.generate("live").token,
    "HOKUSAI_GATEWAY_URL": "https://gw.invalid",
    "HOKUSAI_CA_CERT": "/nonexistent.pem",
    "HOKUSAI_MOCK_MODE": "false",
    "HOKUSAI_MLFLOW_FALLBACK": "true",
    "HOKUSAI_MLFLOW_OPTIONAL": "true",
}


def test_the_server_parses_keys_with_the_client_s_format() -> None:
    """One definition of the key format: the server's key module imports hokusai.keyformat's
    names and defines none of them (read from its source: the e2e tests wrap ``generate`` at run
    time to record every key they make), and the hot path's ``parse`` is the client's own."""
    from authz.keys import format as keys

    tree = ast.parse(inspect.getsource(keys))
    imported = {
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "hokusai.keyformat"
        for alias in node.names
    }
    defined = {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)
    } | {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    for name in (
        "parse",
        "checksum",
        "display_prefix",
        "generate",
        "ParsedKey",
        "NewKey",
        "KEY_PATTERN",
        "KEY_LENGTH",
    ):
        assert name in imported and name not in defined, name
    assert keys.parse is keyformat.parse and keys.ParsedKey is keyformat.ParsedKey
    source = inspect.getsource(keys)
    assert "def _base62" not in source and "_PAIRS =" not in source  # no duplicate survives


def test_the_server_settings_ignore_the_client_variables() -> None:
    from authz.settings import Settings

    Settings.from_env(CLIENT_ENV)  # today: "HOKUSAI_API_KEY: unknown setting"


def test_hokusai_doctor_is_the_client_s_doctor(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hokusai doctor` runs hokusai.doctor: it reads HOKUSAI_* (then MLFLOW_*) and has --write."""
    from cli.main import main

    for name, value in CLIENT_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HOKUSAI_CA_CERT")
    runs: list[object] = []
    real_run = client_doctor.run

    def recording_run(*args: Any, **kwargs: Any) -> Any:
        runs.append(args)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(client_doctor, "run", recording_run)
    assert main(["doctor", "--write", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    statuses = {c["check"]: c["status"] for c in report["checks"]}
    assert statuses["url"] == "ok" and statuses["key"] == "ok"  # from HOKUSAI_* alone
    assert statuses["dns"] == "FAIL" and statuses["delete"] == "skip"
    assert len(runs) == 1  # the client's checks ran: the ops CLI has no copy of its own
    assert not (ROOT / "cli" / "doctor.py").exists()


def test_envoy_s_own_denials_carry_mlflow_error_codes() -> None:
    """When authz cannot answer (503) or the local shield limits (429), Envoy writes the body."""
    from cli import envoy_config

    mappers = envoy_config.local_reply_config(envoy_config.EnvoyOptions())["mappers"]
    # The status-only mappers (the upstream-down ones add response-flag and path filters).
    bodies = {
        m["filter"]["status_code_filter"]["comparison"]["value"]["default_value"]: json.loads(
            m["body"]["inline_string"]
        )
        for m in mappers
        if "status_code_filter" in m["filter"]
    }
    for mapper in mappers:  # every body Envoy writes speaks MLflow, the named outages included
        assert "error_code" in json.loads(mapper["body"]["inline_string"])
    assert bodies[503]["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert bodies[429]["error_code"] == "RESOURCE_EXHAUSTED"
    assert bodies[503]["error"] == "unavailable"  # the one error shape stays one shape


def test_the_readme_quickstart_starts_with_the_client() -> None:
    quickstart = (ROOT / "README.md").read_text().split("## Quickstart", 1)[1].split("\n## ")[0]
    first = re.search(r"```(console|python)\n(.*?)```", quickstart, re.S)
    assert first is not None and "HOKUSAI_API_KEY" in first[2]
    assert "MLFLOW_TRACKING_TOKEN" not in quickstart.split("```", 3)[1]
