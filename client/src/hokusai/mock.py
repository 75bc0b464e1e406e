"""``MockExperimentManager``: the manager's calls in memory, for unit tests (``HOKUSAI_MOCK_MODE``).

It keeps what MLflow would keep — experiments, runs, params, metric histories, tags, artifact bytes,
registered model versions — and enforces the rules code most often trips on in MLflow: a param
cannot be changed once logged, names are non-empty, metrics are numbers, unknown run ids fail.
Tests read the state back through the same calls (``get_run``, ``read_artifact``,
``model_versions``) or through ``experiments``, ``runs`` and ``metric_history``.

Limits (what it does not do): no search or filter language, no autologging, no ``mlflow.*``
fluent calls (those go to the throwaway store ``setup()`` points MLflow at, not here), no
server-side validation beyond the rules above, nothing persists after the process.
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from hokusai.manager import BaseExperimentManager, ModelVersion, RunData, Value

STATUSES = frozenset({"RUNNING", "FINISHED", "FAILED", "KILLED"})


@dataclass
class _Run:
    data: RunData
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


class MockExperimentManager(BaseExperimentManager):
    """In-memory tracking; thread-safe; ``Default`` is experiment ``0`` as in MLflow."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._experiments: dict[str, str] = {"Default": "0"}
        self._ids = itertools.count(1)
        self._runs: dict[str, _Run] = {}
        self._models: dict[str, list[ModelVersion]] = {}

    # --- inspection (mock only) ---------------------------------------------------------------

    @property
    def experiments(self) -> dict[str, str]:
        """Experiment name → id."""
        with self._lock:
            return dict(self._experiments)

    @property
    def runs(self) -> list[RunData]:
        with self._lock:
            return [r.data for r in self._runs.values()]

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) in the order logged."""
        with self._lock:
            return list(self._run(run_id).history.get(key, []))

    # --- the manager's calls -------------------------------------------------------------------

    def get_or_create_experiment(self, name: str) -> str:
        _named(name, "experiment name")
        with self._lock:
            if name not in self._experiments:
                self._experiments[name] = str(next(self._ids))
            return self._experiments[name]

    def create_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        tags: Mapping[str, Value] | None = None,
    ) -> str:
        run_id = uuid.uuid4().hex
        with self._lock:
            if experiment_id not in self._experiments.values():
                raise LookupError(f"no experiment with id {experiment_id!r}")
            all_tags = {k: str(v) for k, v in (tags or {}).items()}
            if run_name:
                all_tags["mlflow.runName"] = run_name
            self._runs[run_id] = _Run(
                RunData(run_id, experiment_id, "RUNNING", run_name, tags=all_tags)
            )
        return run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        self._update(run_id, lambda d: replace(d, status=status))

    def log_params(self, run_id: str, params: Mapping[str, Value]) -> None:
        def merge(data: RunData) -> RunData:
            merged = dict(data.params)
            for key, value in params.items():
                _named(key, "param name")
                if key in merged and merged[key] != str(value):
                    raise ValueError(
                        f"param {key!r} was already logged as {merged[key]!r}: "
                        "MLflow does not allow changing it"
                    )
                merged[key] = str(value)
            return replace(data, params=merged)

        self._update(run_id, merge)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        for key, value in metrics.items():
            _named(key, "metric name")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"metric {key!r} must be a number, not {type(value).__name__}")
        with self._lock:
            run = self._run(run_id)
            for key, value in metrics.items():
                run.history.setdefault(key, []).append((step, float(value)))
            latest = {k: v[-1][1] for k, v in run.history.items()}
            run.data = replace(run.data, metrics=latest)

    def set_tags(self, run_id: str, tags: Mapping[str, Value]) -> None:
        for key in tags:
            _named(key, "tag name")
        self._update(
            run_id, lambda d: replace(d, tags={**d.tags, **{k: str(v) for k, v in tags.items()}})
        )

    def log_artifact(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        source = Path(local_path)
        name = str(PurePosixPath(artifact_path or "") / source.name)
        self._store(run_id, name, source.read_bytes())

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._store(run_id, str(PurePosixPath(artifact_file)), text.encode())

    def read_artifact(self, run_id: str, path: str) -> bytes:
        with self._lock:
            files = self._run(run_id).files
            if path not in files:
                raise LookupError(f"run {run_id} has no artifact {path!r}")
            return files[path]

    def register_model(self, run_id: str, artifact_path: str, name: str) -> ModelVersion:
        _named(name, "model name")
        with self._lock:
            self._run(run_id)
            versions = self._models.setdefault(name, [])
            made = ModelVersion(
                name, str(len(versions) + 1), run_id, f"mock://runs/{run_id}/{artifact_path}"
            )
            versions.append(made)
            return made

    def model_versions(self, name: str) -> list[ModelVersion]:
        with self._lock:
            return list(self._models.get(name, []))

    def get_run(self, run_id: str) -> RunData:
        with self._lock:
            return self._run(run_id).data

    def delete_run(self, run_id: str) -> None:
        with self._lock:
            self._run(run_id)
            del self._runs[run_id]

    # --- internals -------------------------------------------------------------------------------

    def _run(self, run_id: str) -> _Run:
        if run_id not in self._runs:
            raise LookupError(f"no run with id {run_id!r}")
        return self._runs[run_id]

    def _update(self, run_id: str, change: Callable[[RunData], RunData]) -> None:
        with self._lock:
            run = self._run(run_id)
            run.data = change(run.data)

    def _store(self, run_id: str, name: str, content: bytes) -> None:
        with self._lock:
            run = self._run(run_id)
            run.files[name] = content
            run.data = replace(run.data, artifacts=tuple(sorted(run.files)))


def _named(name: str, what: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} must be a non-empty string")
