"""``ExperimentManager``: the manager's calls through MLflow (imported on first use).

It talks to whatever tracking URI it is given — the gateway in remote mode, the local store in
fallback mode — through ``MlflowClient``, so MLflow's own retries (bounded by ``setup()``) apply.
An exception that means the gateway refused or is unavailable is re-raised as the typed error
(``hokusai.mlflow_errors``), the MLflow exception as its cause; any other MLflow error passes
through unchanged.

``optional=True`` (optional mode): the first ``UnavailableError`` turns this manager into a
``DisabledExperimentManager`` — that call and every later one are no-ops, with one warning.
Authentication, permission and rate-limit errors still raise.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import requests

from hokusai import errors
from hokusai.gateway import MLFLOW_HEALTH
from hokusai.manager import (
    BaseExperimentManager,
    DisabledExperimentManager,
    ModelVersion,
    RunData,
    Value,
)
from hokusai.mlflow_errors import translate

T = TypeVar("T")
RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"


class ExperimentManager(BaseExperimentManager):
    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        context: errors.Context | None = None,
        ca_cert: str | None = None,
        optional: bool = False,
    ) -> None:
        from mlflow import MlflowClient

        self.client: Any = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.context = context or errors.Context()
        self.ca_cert, self.optional = ca_cert, optional
        self.disabled: DisabledExperimentManager | None = None

    # --- translation and optional mode ---------------------------------------------------------

    def _call(self, work: Callable[[], T], skipped: Callable[[DisabledExperimentManager], T]) -> T:
        if self.disabled is not None:
            return skipped(self.disabled)
        try:
            return work()
        except errors.HokusaiError:
            raise
        except Exception as exc:
            typed = translate(exc, self.context, self._mlflow_up)
            if typed is None:
                raise
            if self.optional and isinstance(typed, errors.UnavailableError):
                self.disabled = DisabledExperimentManager(str(typed).splitlines()[0])
                return skipped(self.disabled)
            raise typed from exc

    def _mlflow_up(self) -> bool:
        """Whether MLflow behind the gateway answers (tells a 503 from the gateway from one of
        MLflow's, once MLflow's retries have swallowed the body)."""
        if self.context.gateway is None:
            return True
        try:
            answer = requests.get(
                self.context.gateway + MLFLOW_HEALTH, verify=self.ca_cert or True, timeout=5
            )
        except requests.RequestException:
            return False
        return answer.status_code == 200

    # --- the manager's calls -------------------------------------------------------------------

    def get_or_create_experiment(self, name: str) -> str:
        def work() -> str:
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                return str(found.experiment_id)
            try:
                return str(self.client.create_experiment(name))
            except Exception as exc:  # a concurrent creation won the race: use it
                if getattr(exc, "error_code", None) != RESOURCE_ALREADY_EXISTS:
                    raise
                return str(self.client.get_experiment_by_name(name).experiment_id)

        return self._call(work, lambda d: d.get_or_create_experiment(name))

    def create_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        tags: Mapping[str, Value] | None = None,
    ) -> str:
        def work() -> str:
            run = self.client.create_run(
                experiment_id, run_name=run_name, tags={k: str(v) for k, v in (tags or {}).items()}
            )
            return str(run.info.run_id)

        return self._call(work, lambda d: d.create_run(experiment_id, run_name, tags))

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self._call(
            lambda: self.client.set_terminated(run_id, status), lambda d: d.end_run(run_id, status)
        )

    def log_params(self, run_id: str, params: Mapping[str, Value]) -> None:
        from mlflow.entities import Param

        batch = [Param(k, str(v)) for k, v in params.items()]
        self._call(
            lambda: self.client.log_batch(run_id, params=batch),
            lambda d: d.log_params(run_id, params),
        )

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self._call(
            lambda: self.client.log_batch(run_id, metrics=batch),
            lambda d: d.log_metrics(run_id, metrics, step),
        )

    def set_tags(self, run_id: str, tags: Mapping[str, Value]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        self._call(
            lambda: self.client.log_batch(run_id, tags=batch), lambda d: d.set_tags(run_id, tags)
        )

    def log_artifact(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        self._call(
            lambda: self.client.log_artifact(run_id, os.fspath(local_path), artifact_path),
            lambda d: d.log_artifact(run_id, local_path, artifact_path),
        )

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._call(
            lambda: self.client.log_text(run_id, text, artifact_file),
            lambda d: d.log_text(run_id, text, artifact_file),
        )

    def read_artifact(self, run_id: str, path: str) -> bytes:
        def work() -> bytes:
            with tempfile.TemporaryDirectory(prefix="hokusai-artifact-") as tmp:
                local = self.client.download_artifacts(run_id, path, tmp)
                return Path(local).read_bytes()

        return self._call(work, lambda d: d.read_artifact(run_id, path))

    def register_model(self, run_id: str, artifact_path: str, name: str) -> ModelVersion:
        def work() -> ModelVersion:
            try:
                self.client.create_registered_model(name)
            except Exception as exc:
                if getattr(exc, "error_code", None) != RESOURCE_ALREADY_EXISTS:
                    raise
            run = self.client.get_run(run_id)
            source = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
            made = self.client.create_model_version(name, source, run_id=run_id)
            return ModelVersion(name, str(made.version), run_id, source)

        return self._call(work, lambda d: d.register_model(run_id, artifact_path, name))

    def model_versions(self, name: str) -> list[ModelVersion]:
        def work() -> list[ModelVersion]:
            found = self.client.search_model_versions(f"name = '{_quoted(name)}'")
            versions = [
                ModelVersion(v.name, str(v.version), v.run_id or "", v.source or "") for v in found
            ]
            return sorted(versions, key=lambda v: int(v.version))

        return self._call(work, lambda d: d.model_versions(name))

    def get_run(self, run_id: str) -> RunData:
        def work() -> RunData:
            run = self.client.get_run(run_id)
            return RunData(
                run.info.run_id,
                run.info.experiment_id,
                run.info.status,
                run.info.run_name,
                dict(run.data.params),
                dict(run.data.metrics),
                dict(run.data.tags),
                tuple(self._files(run_id, None)),
            )

        return self._call(work, lambda d: d.get_run(run_id))

    def _files(self, run_id: str, path: str | None) -> list[str]:
        found: list[str] = []
        for info in self.client.list_artifacts(run_id, path):
            found += self._files(run_id, info.path) if info.is_dir else [info.path]
        return found

    def delete_run(self, run_id: str) -> None:
        self._call(lambda: self.client.delete_run(run_id), lambda d: d.delete_run(run_id))


def _quoted(name: str) -> str:
    return name.replace("\\", "\\\\").replace("'", "\\'")
