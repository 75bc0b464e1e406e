"""The three experiment managers share one surface; the mock behaves like MLflow where code most
often relies on it; the disabled one does nothing and says so once."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import pytest

import hokusai
from hokusai import BaseExperimentManager, DisabledExperimentManager, MockExperimentManager
from hokusai.errors import TrackingModeWarning
from hokusai.mlflow_manager import ExperimentManager

PUBLIC = sorted(
    name
    for name, member in inspect.getmembers(BaseExperimentManager)
    if not name.startswith("_") and callable(member)
)


@pytest.mark.parametrize(
    "cls", [ExperimentManager, MockExperimentManager, DisabledExperimentManager]
)
def test_one_surface(cls: type[BaseExperimentManager]) -> None:
    assert not inspect.isabstract(cls)
    for name in PUBLIC:
        ours, base = (
            inspect.signature(getattr(cls, name)),
            inspect.signature(getattr(BaseExperimentManager, name)),
        )
        assert list(ours.parameters) == list(base.parameters), (cls, name)


def test_a_run_with_everything(tmp_path: Path) -> None:
    mock = MockExperimentManager()
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00\x01")
    with mock.start_run("churn", run_name="baseline", tags={"team": "risk"}) as run:
        run.log_params({"alpha": 0.5, "layers": 3})
        run.log_param("alpha", 0.5)  # the same value again is fine, as in MLflow
        for step, value in enumerate([0.9, 0.5, 0.3]):
            run.log_metric("rmse", value, step=step)
        run.set_tag("stage", "dev")
        run.log_artifact(weights, "model")
        run.log_text("hello", "notes/readme.txt")
    data = mock.get_run(run.id)
    assert data.status == "FINISHED" and data.name == "baseline"
    assert data.params == {"alpha": "0.5", "layers": "3"}
    assert data.metrics == {"rmse": 0.3}
    assert mock.metric_history(run.id, "rmse") == [(0, 0.9), (1, 0.5), (2, 0.3)]
    assert data.tags["team"] == "risk" and data.tags["stage"] == "dev"
    assert data.artifacts == ("model/weights.bin", "notes/readme.txt")
    assert run.read_artifact("model/weights.bin") == b"\x00\x01"
    assert mock.experiments == {"Default": "0", "churn": run.experiment_id}
    first = mock.register_model(run.id, "model", "churn-model")
    second = mock.register_model(run.id, "model", "churn-model")
    assert [v.version for v in mock.model_versions("churn-model")] == ["1", "2"]
    assert (first.version, second.run_id) == ("1", run.id)


def test_a_failing_block_marks_the_run_failed() -> None:
    mock = MockExperimentManager()
    with pytest.raises(ZeroDivisionError), mock.start_run("e") as run:
        1 / 0  # noqa: B018
    assert mock.get_run(run.id).status == "FAILED"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda m, r: m.log_param(r, "alpha", 0.7), ValueError),
        (lambda m, r: m.log_metric(r, "rmse", "high"), ValueError),
        (lambda m, r: m.log_metric(r, "", 1.0), ValueError),
        (lambda m, r: m.log_param("no-such-run", "a", 1), LookupError),
        (lambda m, r: m.read_artifact(r, "missing.txt"), LookupError),
        (lambda m, r: m.create_run("999"), LookupError),
        (lambda m, r: m.end_run(r, "DONE"), ValueError),
    ],
)
def test_what_mlflow_would_refuse(call, error: type[Exception]) -> None:
    mock = MockExperimentManager()
    run_id = mock.create_run(mock.get_or_create_experiment("e"))
    mock.log_param(run_id, "alpha", 0.5)
    with pytest.raises(error):
        call(mock, run_id)


def test_delete() -> None:
    mock = MockExperimentManager()
    run_id = mock.create_run("0")
    mock.delete_run(run_id)
    assert mock.runs == []
    with pytest.raises(LookupError):
        mock.get_run(run_id)


def test_disabled_is_quiet_after_one_warning() -> None:
    manager = DisabledExperimentManager("the gateway is down")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with manager.start_run("e") as run:
            run.log_param("a", 1)
            run.log_metric("m", 1.0)
        assert manager.read_artifact("", "x") == b""
        assert manager.register_model("", "m", "model").version == ""
    assert [str(w.message) for w in seen] == [
        "hokusai: tracking is disabled, calls are no-ops (the gateway is down)"
    ]
    assert all(issubclass(w.category, TrackingModeWarning) for w in seen)


def test_the_package_exports_the_surface() -> None:
    for name in (
        "setup",
        "experiment_manager",
        "ExperimentManager",
        "MockExperimentManager",
        "BaseExperimentManager",
        "Status",
        "Mode",
        "HokusaiError",
    ):
        assert hasattr(hokusai, name)
