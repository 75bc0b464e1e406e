"""Data for the MLflow UI tests, logged with the standard MLflow client through the gateway (a
read-write key in MLFLOW_TRACKING_TOKEN): an experiment with runs (params, 20-step metrics, tags,
a text and a binary artifact, a model directory the UI can register), a registered model with a
version, and a trace. Run as a subprocess; prints one JSON line."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

import mlflow
from mlflow import MlflowClient

MLMODEL = """artifact_path: clf
flavors:
  python_function:
    loader_module: mlflow.pyfunc.model
    python_version: 3.11.7
mlflow_version: {version}
"""


def main() -> None:
    suffix = uuid.uuid4().hex[:8]
    experiment = f"ui-{suffix}"
    mlflow.set_experiment(experiment)
    out: dict[str, object] = {"experiment": experiment, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "weights.bin"
        binary.write_bytes(os.urandom(4096))
        out["binary_hex"] = binary.read_bytes().hex()
        for index, alpha in enumerate(("0.1", "0.5")):
            with mlflow.start_run(run_name=f"run-{index}") as run:
                mlflow.log_params({"alpha": alpha, "l1_ratio": "0.3"})
                for step in range(20):
                    mlflow.log_metric("rmse", 1.0 / (step + 1) + float(alpha), step=step)
                mlflow.set_tags({"team": "ui", "stage": "dev"})
                mlflow.log_text(f"hello from run {index}\nalpha={alpha}\n", "notes.txt")
                mlflow.log_artifact(str(binary), artifact_path="data")
                model = Path(tmp) / f"clf-{index}"
                model.mkdir()
                (model / "MLmodel").write_text(MLMODEL.format(version=mlflow.__version__))
                (model / "model.pkl").write_bytes(b"\x80\x04N.")
                mlflow.log_artifacts(str(model), artifact_path="clf")
                out["runs"].append(run.info.run_id)  # type: ignore[attr-defined]
    client = MlflowClient()
    runs: list[str] = out["runs"]  # type: ignore[assignment]
    model_name = f"ui-model-{suffix}"
    client.create_registered_model(model_name, description="a model for the UI tests")
    client.create_model_version(model_name, f"runs:/{runs[0]}/clf", run_id=runs[0])
    out["model"] = model_name
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    out["experiment_id"] = found.experiment_id

    @mlflow.trace
    def add(a: int, b: int) -> int:
        with mlflow.start_span("inner") as span:
            span.set_inputs({"a": a})
            span.set_outputs({"twice": a * 2})
        return a + b

    add(1, 2)
    out["trace"] = mlflow.get_last_active_trace_id()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
