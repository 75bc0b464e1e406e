"""The client with MLflow for real, no gateway: the local store of fallback and mock mode (real
SQLite, real artifacts), and the auth plugin's header on the wire of MLflow's own requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

import hokusai
from hokusai import keyformat, tracking
from hokusai.mlflow_manager import ExperimentManager
from hokusai.settings import Settings
from tests.support.client import isolated_state

isolated = pytest.fixture(isolated_state)
pytestmark = pytest.mark.usefixtures("isolated")
KEY = keyformat.generate("live").token


def test_stray_mlflow_calls_in_mock_mode_stay_in_the_throwaway_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.chdir(tmp_path)
    status = hokusai.setup(mock=True)
    assert status.local_store is not None
    mlflow.set_experiment("stray")
    with mlflow.start_run():
        mlflow.log_param("alpha", 0.5)
        mlflow.log_text("hello", "notes.txt")
    assert list(status.local_store.rglob("notes.txt"))
    assert not (tmp_path / "mlruns").exists()  # nothing in the working directory


def test_the_fallback_store_holds_runs_artifacts_and_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    directory = tmp_path / "store"
    uri = tracking.use_local(directory)
    manager = ExperimentManager(uri)
    with manager.start_run("offline") as run:
        run.log_params({"alpha": 0.5})
        run.log_metric("rmse", 0.25)
        run.log_text("weights", "model/weights.txt")
    version = manager.register_model(run.id, "model", "offline-model")
    assert version.version == "1" and version.source.startswith(directory.as_uri())
    assert (directory / "artifacts").is_dir() and not (tmp_path / "mlruns").exists()
    # What docs/python-client.md tells users to browse the runs with:
    plain = MlflowClient(tracking_uri=f"sqlite:///{directory / 'mlflow.db'}")
    found = plain.search_runs([run.experiment_id])
    assert [r.info.run_id for r in found] == [run.id]
    assert found[0].data.metrics == {"rmse": 0.25}


class Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        Recorder.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = json.dumps({"experiments": []}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def recorder() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Recorder.seen.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_mlflow_sends_the_key_through_the_plugin(recorder: str) -> None:
    from mlflow import MlflowClient

    os.environ.update(
        {
            "MLFLOW_TRACKING_USERNAME": "old",
            "MLFLOW_TRACKING_PASSWORD": "basic",
            "MLFLOW_TRACKING_TOKEN": "stale-token",
        }
    )
    tracking.use_remote(Settings(url=recorder, key=KEY))
    MlflowClient().search_experiments()
    assert Recorder.seen and Recorder.seen[-1]["authorization"] == f"Bearer {KEY}"
    assert (
        "MLFLOW_TRACKING_TOKEN" not in os.environ
        or os.environ["MLFLOW_TRACKING_TOKEN"] == "stale-token"
    )  # the key was not copied there


def test_importing_and_mock_setup_leave_mlflow_unimported() -> None:
    code = (
        "import sys, hokusai; s = hokusai.setup(mock=True); "
        "assert 'mlflow' not in sys.modules, 'mlflow imported'; print(s.mode.value)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "mock"
