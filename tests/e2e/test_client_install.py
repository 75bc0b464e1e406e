"""`pip install ./client` into a clean virtual environment that has only MLflow (mlflow-skinny at
the locked version): the install line of docs/python-client.md, executed; then mock mode with no
server, and the real gateway — the auth plugin found by entry point from a regular install."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import Gateway
from tests.support import docs

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "python-client.md"
LOCKED = re.search(r"^mlflow-skinny==(\S+)", (ROOT / "requirements.lock").read_text(), re.M)


def install_commands() -> list[str]:
    section = PAGE.read_text().split("## Install", 1)[1].split("\n## ", 1)[0]
    found = [c.text for c in docs.console_commands(_as_file(section))]
    assert found and all(c.startswith("pip install ") for c in found)
    return found


def _as_file(text: str) -> Path:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"client-install-{os.getpid()}.md"
    path.write_text(text)
    return path


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv}\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment: mlflow-skinny (locked), then the documented install line — with pip
    as uv's pip (same resolver semantics, the local cache, no pip in uv's environments)."""
    uv = shutil.which("uv")
    assert uv, "uv is installed by `make setup`"
    assert LOCKED, "mlflow-skinny is in requirements.lock"
    home = tmp_path_factory.mktemp("clean") / "venv"
    run([uv, "venv", "--quiet", "--python", sys.executable, str(home)])
    python = str(home / "bin" / "python")
    run([uv, "pip", "install", "--quiet", "--python", python, f"mlflow-skinny=={LOCKED[1]}"])
    for command in install_commands():
        words = shlex.split(command)[2:]  # after "pip install"
        run([uv, "pip", "install", "--quiet", "--python", python, *words], cwd=ROOT)
    return home


def python_in(venv: Path, code: str, env: dict[str, str] | None = None) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HOKUSAI_", "MLFLOW_"))}
    clean["PYTHONPATH"] = ""  # nothing of this repository's tree, only what was installed
    done = run(
        [str(venv / "bin" / "python"), "-c", textwrap.dedent(code)],
        env={**clean, **(env or {})},
        cwd=str(venv),
    )
    return done.stdout


def test_only_requests_comes_with_it(venv: Path) -> None:
    shown = json.loads(
        python_in(
            venv,
            """
        import importlib.metadata as m, importlib.util as u, json
        print(json.dumps({
            "requires": m.requires("hokusai-client"),
            "present": [n for n in ("grpc", "psycopg", "authz", "cli", "envoy", "sqlalchemy")
                        if u.find_spec(n)],
            "doctor": [e.value for e in m.entry_points(group="console_scripts")
                       if e.name == "hokusai-doctor"],
        }))
    """,
        )
    )
    assert shown["requires"] == ["requests>=2.28", 'mlflow-skinny>=3.0; extra == "mlflow"']
    assert shown["present"] == []  # no server package, and mlflow-skinny has no SQL store
    assert shown["doctor"] == ["hokusai.doctor.cli:main"]


def test_mock_mode_with_no_server(venv: Path) -> None:
    out = python_in(
        venv,
        """
        import hokusai, hokusai.keyformat, mlflow
        status = hokusai.setup()
        manager = hokusai.experiment_manager()
        with manager.start_run("unit") as run:
            run.log_metric("rmse", 0.5)
        print(status.mode.value, type(manager).__name__, manager.get_run(run.id).metrics)
        try:
            mlflow.set_experiment("stray")  # stays local: here it cannot even be stored
        except mlflow.exceptions.MlflowException as exc:
            print("stray:", "SQL store" in str(exc))
        try:
            key = hokusai.keyformat.generate("live").token
            hokusai.setup(api_key=key, url="https://gw.invalid", mock=False, fallback=True)
        except hokusai.ConfigurationError as exc:
            print("fallback:", "SQL store" in str(exc))
    """,
        {"HOKUSAI_MOCK_MODE": "true"},
    )
    assert out.splitlines()[0] == "mock MockExperimentManager {'rmse': 0.5}"
    assert "stray: True" in out
    assert "fallback: True" in out  # refused before any network I/O: no SQL store here


def test_against_the_real_gateway(venv: Path, gateways: dict[str, Gateway]) -> None:
    gateway = gateways["http"]
    _view, new = gateway.service().create_key(
        user_email="install@example.com", name="install", scopes=["mlflow:read", "mlflow:write"]
    )
    env = {
        "HOKUSAI_API_KEY": new.token,
        "HOKUSAI_GATEWAY_URL": gateway.url,
        "HOKUSAI_CA_CERT": gateway.ca,
    }
    out = python_in(
        venv,
        """
        import json, hokusai
        status = hokusai.setup()
        manager = hokusai.experiment_manager()
        with manager.start_run("clean-venv") as run:
            run.log_params({"installed": "from ./client"})
            run.log_text("hello", "hello.txt")
        version = manager.register_model(run.id, "hello.txt", "clean-venv-model")
        print(json.dumps({"mode": status.mode.value, "params": manager.get_run(run.id).params,
                          "artifact": manager.read_artifact(run.id, "hello.txt").decode(),
                          "version": version.version}))
    """,
        env,
    )
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["mode"] == "remote" and seen["params"] == {"installed": "from ./client"}
    assert seen["artifact"] == "hello" and int(seen["version"]) >= 1
    doctor = run(
        [str(venv / "bin" / "hokusai-doctor"), "--json"],
        env={**os.environ, **env, "PYTHONPATH": ""},
    )
    assert json.loads(doctor.stdout)["ok"] is True
    assert new.token[21:64] not in out + doctor.stdout
