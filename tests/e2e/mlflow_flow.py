"""The standard MLflow client, unmodified, against the gateway; run as a subprocess whose
environment holds MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_SERVER_CERT_PATH.
Prints one JSON line describing what it saw."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

import mlflow
from mlflow import MlflowClient


def main() -> None:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    payload = os.urandom(256 * 1024)  # binary, bigger than one buffer: streamed both ways
    mlflow.set_experiment(name)
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "weights.bin"
        artifact.write_bytes(payload)
        with mlflow.start_run() as run:
            mlflow.log_param("alpha", "0.5")
            for step in range(3):
                mlflow.log_metric("rmse", 1.0 / (step + 1), step=step)
            mlflow.log_artifact(str(artifact))
        client = MlflowClient()
        client.create_registered_model(name)
        version = client.create_model_version(
            name, f"{run.info.artifact_uri}/weights.bin", run_id=run.info.run_id
        )
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id], "params.alpha = '0.5'")
        local = client.download_artifacts(run.info.run_id, "weights.bin", tmp + "/down")
        print(
            json.dumps(
                {
                    "runs": [r.info.run_id for r in runs],
                    "run_id": run.info.run_id,
                    "metric": runs[0].data.metrics.get("rmse"),
                    "version": version.version,
                    "artifact_intact": Path(local).read_bytes() == payload,
                }
            )
        )


if __name__ == "__main__":
    main()
