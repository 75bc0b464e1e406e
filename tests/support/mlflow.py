"""The standard MLflow client end to end through a gateway (Envoy or NGINX): a runner for
scripts that use it (``run_client_script``) and the end-to-end check built on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FLOW = Path(__file__).resolve().parents[1] / "e2e" / "mlflow_flow.py"


def run_client_script(script: Path, tracking_uri: str, token: str, ca_cert: str) -> dict[str, Any]:
    """Run ``script`` with only the MLflow client's own settings; the JSON of its last line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HOKUSAI_"))}
    env.update(
        MLFLOW_TRACKING_URI=tracking_uri,
        MLFLOW_TRACKING_TOKEN=token,
        MLFLOW_TRACKING_SERVER_CERT_PATH=ca_cert,
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def assert_mlflow_client_works(tracking_uri: str, token: str, ca_cert: str) -> dict[str, Any]:
    """Run tests/e2e/mlflow_flow.py and check it created, logged, registered, searched and
    downloaded intact."""
    result = run_client_script(FLOW, tracking_uri, token, ca_cert)
    assert result["runs"] == [result["run_id"]]
    assert result["metric"] == pytest.approx(1 / 3)
    assert result["version"] == "1"
    assert result["artifact_intact"] is True
    return result
