"""Check 10 (opt-in, ``--write``): does writing work? One run through MLflow, then gone again.

In experiment ``hokusai-doctor``: create a run, log a param and a metric and read them back,
upload a 64 KiB random artifact, download it and compare byte for byte, delete the run. Every
step is one result; a failure carries the advice of the reason the gateway gave (a read-only key
fails at the first write with ``insufficient_scope``). Later steps are skipped after a failure,
except the clean-up, which runs whenever a run was created.

It goes through ``ExperimentManager`` — MLflow with the client's auth plugin, CA and bounded
retries — exactly as a training script would, with the MLflow settings restored afterwards.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hokusai import errors, tracking
from hokusai.doctor.network import Endpoint
from hokusai.doctor.results import Result, fail, ok, skips
from hokusai.doctor.target import Target
from hokusai.keyformat import ParsedKey
from hokusai.manager import BaseExperimentManager
from hokusai.redact import Scrubber
from hokusai.settings import Settings

EXPERIMENT = "hokusai-doctor"
CHECKS = ("experiment", "run", "log", "upload", "download", "delete")
PAYLOAD_BYTES = 64 * 1024
T = TypeVar("T")


class StepFailed(Exception):
    def __init__(self, result: Result) -> None:
        super().__init__(result.detail)
        self.result = result


def run_write(endpoint: Endpoint, target: Target, key: ParsedKey) -> list[Result]:
    """The write probe; the key already passed the access check."""
    try:
        import mlflow  # noqa: F401 - only to learn whether it is installed

        from hokusai.mlflow_manager import ExperimentManager
    except ImportError:
        missing = fail(
            "experiment",
            "MLflow is not installed here",
            "pip install mlflow-skinny (or mlflow) to try a write",
        )
        return [missing, *skips(CHECKS[1:], "needs MLflow")]
    assert target.key is not None
    settings = Settings(
        url=endpoint.gateway,
        key=target.key.strip(),
        ca_cert=os.path.abspath(target.ca) if target.ca else None,
        names=target.names,
    )
    context = errors.Context(endpoint.gateway, target.names, key.display_prefix, key.env)
    with tracking.remote_environment(settings):
        manager = ExperimentManager(
            settings.tracking_uri, context=context, ca_cert=settings.ca_cert
        )
        return Probe(manager, Scrubber([target.key])).run()


class Probe:
    def __init__(self, manager: BaseExperimentManager, scrub: Scrubber) -> None:
        self.manager, self.scrub = manager, scrub
        self.results: list[Result] = []

    def run(self) -> list[Result]:
        created: list[str] = []
        try:
            experiment = self.step(
                "experiment",
                lambda: self.manager.get_or_create_experiment(EXPERIMENT),
                lambda e: f"experiment {EXPERIMENT} (id {e})",
            )
            run_id = self.step(
                "run",
                lambda: self.manager.create_run(
                    experiment, f"doctor-{socket.gethostname()}-{int(time.time())}"
                ),
                lambda r: f"created run {r}",
            )
            created.append(run_id)
            self.step(
                "log", lambda: self._log(run_id), lambda _: "param and metric logged and read back"
            )
            payload = os.urandom(PAYLOAD_BYTES)
            self.step(
                "upload",
                lambda: self._upload(run_id, payload),
                lambda _: f"uploaded probe.bin ({PAYLOAD_BYTES} bytes)",
            )
            self.step(
                "download",
                lambda: self._download(run_id, payload),
                lambda _: "downloaded probe.bin: byte-identical",
            )
        except StepFailed as failed:
            self.results.append(failed.result)
            done = {r.check for r in self.results}
            self.results += skips(
                [c for c in CHECKS[:-1] if c not in done], f"needs {failed.result.check}"
            )
        self._delete(created[0] if created else None)
        return self.results

    def step(self, check: str, work: Callable[[], T], said: Callable[[T], str]) -> T:
        try:
            value = work()
        except errors.HokusaiError as exc:
            said_by = f" [{exc.reason}]" if exc.reason else ""
            raise StepFailed(
                fail(check, self.scrub(f"{exc.message}{said_by}"), " ".join(exc.steps))
            ) from None
        except Exception as exc:  # MLflow's own refusal: show it, scrubbed
            raise StepFailed(
                fail(
                    check,
                    self.scrub(f"{type(exc).__name__}: {exc}")[:400],
                    "MLflow refused the request: see the message; if it persists, "
                    "tell the gateway's operator",
                )
            ) from None
        self.results.append(ok(check, said(value)))
        return value

    def _log(self, run_id: str) -> None:
        self.manager.log_params(run_id, {"probe": "write"})
        self.manager.log_metrics(run_id, {"probe": 1.0})
        data = self.manager.get_run(run_id)
        if data.params.get("probe") != "write" or data.metrics.get("probe") != 1.0:
            raise errors.HokusaiError(
                "logged, but reading the run back does not show them",
                steps=("Tell the gateway's operator: MLflow lost a write.",),
            )

    def _upload(self, run_id: str, payload: bytes) -> None:
        with tempfile.TemporaryDirectory(prefix="hokusai-doctor-") as tmp:
            path = Path(tmp) / "probe.bin"
            path.write_bytes(payload)
            self.manager.log_artifact(run_id, path)

    def _download(self, run_id: str, payload: bytes) -> None:
        back = self.manager.read_artifact(run_id, "probe.bin")
        if back != payload:
            raise errors.HokusaiError(
                f"read back {len(back)} bytes that differ from the {len(payload)} uploaded",
                steps=(
                    "Something between you and MLflow alters artifacts (a proxy?): tell the "
                    "gateway's operator.",
                ),
            )

    def _delete(self, run_id: str | None) -> None:
        if run_id is None:
            self.results += skips(["delete"], "no run was created")
            return
        try:
            self.step(
                "delete", lambda: self.manager.delete_run(run_id), lambda _: f"deleted run {run_id}"
            )
        except StepFailed as failed:
            self.results.append(failed.result)
