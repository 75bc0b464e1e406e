"""The experiment manager's one surface, shared by the three implementations.

* ``ExperimentManager`` (``hokusai.mlflow_manager``): MLflow, through the gateway or on the local
  fallback store; gateway denials become the typed errors of ``hokusai.errors``.
* ``MockExperimentManager`` (``hokusai.mock``): the same calls in memory, for unit tests.
* ``DisabledExperimentManager`` (here): every call a no-op — optional mode with tracking down.

``BaseExperimentManager`` holds the abstract calls (all by run id) and the conveniences built on
them: ``start_run`` (a context manager yielding a ``Run`` handle; the run ends FINISHED, or FAILED
when the block raises) and the single-value forms of the batch calls.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from hokusai.errors import warn_mode

log = logging.getLogger("hokusai")
Value = str | int | float | bool


@dataclass(frozen=True, slots=True)
class RunData:
    """A run as stored: params and tags as strings, metrics at their latest value."""

    run_id: str
    experiment_id: str
    status: str
    name: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    artifacts: tuple[str, ...] = ()  # every file, as a path relative to the run's artifact root


@dataclass(frozen=True, slots=True)
class ModelVersion:
    name: str
    version: str
    run_id: str
    source: str


class BaseExperimentManager(ABC):
    """Experiments, runs, params, metrics, tags, artifacts and model registration."""

    @abstractmethod
    def get_or_create_experiment(self, name: str) -> str:
        """The id of experiment ``name``, created if it does not exist."""

    @abstractmethod
    def create_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        tags: Mapping[str, Value] | None = None,
    ) -> str:
        """A new running run; its id."""

    @abstractmethod
    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """FINISHED, FAILED or KILLED."""

    @abstractmethod
    def log_params(self, run_id: str, params: Mapping[str, Value]) -> None: ...

    @abstractmethod
    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None: ...

    @abstractmethod
    def set_tags(self, run_id: str, tags: Mapping[str, Value]) -> None: ...

    @abstractmethod
    def log_artifact(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        """Upload one file, under ``artifact_path`` (a directory) when given."""

    @abstractmethod
    def log_text(self, run_id: str, text: str, artifact_file: str) -> None: ...

    @abstractmethod
    def read_artifact(self, run_id: str, path: str) -> bytes:
        """The bytes of one artifact file."""

    @abstractmethod
    def register_model(self, run_id: str, artifact_path: str, name: str) -> ModelVersion:
        """A new version of registered model ``name`` (created if needed) from a run's artifact."""

    @abstractmethod
    def model_versions(self, name: str) -> list[ModelVersion]: ...

    @abstractmethod
    def get_run(self, run_id: str) -> RunData: ...

    @abstractmethod
    def delete_run(self, run_id: str) -> None: ...

    # --- conveniences -------------------------------------------------------------------------

    def log_param(self, run_id: str, key: str, value: Value) -> None:
        self.log_params(run_id, {key: value})

    def log_metric(self, run_id: str, key: str, value: float, step: int = 0) -> None:
        self.log_metrics(run_id, {key: value}, step)

    def set_tag(self, run_id: str, key: str, value: Value) -> None:
        self.set_tags(run_id, {key: value})

    @contextmanager
    def start_run(
        self,
        experiment: str,
        *,
        run_name: str | None = None,
        tags: Mapping[str, Value] | None = None,
    ) -> Iterator[Run]:
        """A run in experiment ``experiment`` (created if needed), ended when the block ends."""
        experiment_id = self.get_or_create_experiment(experiment)
        run = Run(self, self.create_run(experiment_id, run_name, tags), experiment_id)
        try:
            yield run
        except BaseException:
            self.end_run(run.id, "FAILED")
            raise
        self.end_run(run.id, "FINISHED")


@dataclass(frozen=True, slots=True)
class Run:
    """A handle on one run: the manager's calls with the run id filled in."""

    manager: BaseExperimentManager
    id: str
    experiment_id: str

    def log_param(self, key: str, value: Value) -> None:
        self.manager.log_param(self.id, key, value)

    def log_params(self, params: Mapping[str, Value]) -> None:
        self.manager.log_params(self.id, params)

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        self.manager.log_metric(self.id, key, value, step)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        self.manager.log_metrics(self.id, metrics, step)

    def set_tag(self, key: str, value: Value) -> None:
        self.manager.set_tag(self.id, key, value)

    def log_artifact(
        self, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        self.manager.log_artifact(self.id, local_path, artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.manager.log_text(self.id, text, artifact_file)

    def read_artifact(self, path: str) -> bytes:
        return self.manager.read_artifact(self.id, path)

    def data(self) -> RunData:
        return self.manager.get_run(self.id)


class DisabledExperimentManager(BaseExperimentManager):
    """Optional mode with tracking unavailable: every call does nothing; the first one warns."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self._warned = False

    def _skip(self) -> None:
        if not self._warned:
            self._warned = True
            text = f"hokusai: tracking is disabled, calls are no-ops ({self.reason})"
            log.warning(text)
            warn_mode(text)

    def get_or_create_experiment(self, name: str) -> str:
        self._skip()
        return ""

    def create_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        tags: Mapping[str, Value] | None = None,
    ) -> str:
        self._skip()
        return ""

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self._skip()

    def log_params(self, run_id: str, params: Mapping[str, Value]) -> None:
        self._skip()

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        self._skip()

    def set_tags(self, run_id: str, tags: Mapping[str, Value]) -> None:
        self._skip()

    def log_artifact(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        self._skip()

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._skip()

    def read_artifact(self, run_id: str, path: str) -> bytes:
        self._skip()
        return b""

    def register_model(self, run_id: str, artifact_path: str, name: str) -> ModelVersion:
        self._skip()
        return ModelVersion(name, "", run_id, "")

    def model_versions(self, name: str) -> list[ModelVersion]:
        self._skip()
        return []

    def get_run(self, run_id: str) -> RunData:
        self._skip()
        return RunData(run_id, "", "DISABLED")

    def delete_run(self, run_id: str) -> None:
        self._skip()
