"""The Python client end to end, as a data scientist's script: its environment holds only
HOKUSAI_API_KEY, HOKUSAI_GATEWAY_URL and (for the local stack's private CA) HOKUSAI_CA_CERT — no
MLFLOW_* variable at all. Prints one JSON line describing what it saw."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

import mlflow

import hokusai


def main() -> None:
    assert not [name for name in os.environ if name.startswith("MLFLOW_")]
    status = hokusai.setup()
    name = f"client-e2e-{uuid.uuid4().hex[:8]}"
    payload = os.urandom(256 * 1024)  # binary, bigger than one buffer: streamed both ways
    mlflow.set_experiment(name)
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "weights.bin"
        artifact.write_bytes(payload)
        with mlflow.start_run() as run:  # the stock fluent API, configured by setup()
            mlflow.log_param("alpha", "0.5")
            for step in range(3):
                mlflow.log_metric("rmse", 1.0 / (step + 1), step=step)
            mlflow.log_artifact(str(artifact))
    manager = hokusai.experiment_manager()
    version = manager.register_model(run.info.run_id, "weights.bin", name)
    with manager.start_run(name, run_name="managed") as managed:
        managed.log_params({"layers": 3})
        managed.log_metrics({"accuracy": 0.9}, step=1)
        managed.log_text("notes", "notes.txt")
    data = manager.get_run(run.info.run_id)
    print(
        json.dumps(
            {
                "mode": status.mode.value,
                "user": status.identity and status.identity.user_email,
                "tracking_uri": mlflow.get_tracking_uri(),
                "params": dict(data.params),
                "metric": data.metrics.get("rmse"),
                "artifacts": list(data.artifacts),
                "artifact_intact": manager.read_artifact(run.info.run_id, "weights.bin") == payload,
                "version": version.version,
                "versions": len(manager.model_versions(name)),
                "managed": dict(manager.get_run(managed.id).params),
                "status": data.status,
            }
        )
    )


if __name__ == "__main__":
    main()
