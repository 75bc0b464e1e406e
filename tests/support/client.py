"""Helpers for the Python client's tests: an isolated process state, a fake transport, a retry
policy that records its waits instead of guessing at wall-clock time."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hokusai import connection, mlflow_auth
from hokusai.gateway import Reply, Unreachable
from hokusai.retry import RetryPolicy

CLIENT_VARIABLES = (
    "HOKUSAI_API_KEY",
    "HOKUSAI_GATEWAY_URL",
    "HOKUSAI_CA_CERT",
    "HOKUSAI_MOCK_MODE",
    "HOKUSAI_MLFLOW_FALLBACK",
    "HOKUSAI_MLFLOW_OPTIONAL",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "XDG_DATA_HOME",
)


def _reset_client(tracking_uri: str | None = None) -> None:
    mlflow_auth.use_key(None)
    connection._ANNOUNCED.clear()
    connection._LAST = None
    if "mlflow" in sys.modules:  # the process-wide tracking URI setup() may have set
        from mlflow.tracking._tracking_service import utils

        module: Any = utils  # MLflow's private global, untyped
        module._tracking_uri = tracking_uri


def _mlflow_tracking_uri() -> str | None:
    if "mlflow" not in sys.modules:
        return None
    from mlflow.tracking._tracking_service import utils

    return utils._tracking_uri  # type: ignore[no-any-return]


def isolated_state(tmp_path: Path) -> Iterator[Path]:
    """For a fixture: the client's variables, MLflow's variables and the client's process state
    as if fresh; everything restored afterwards. Yields the XDG data home (fallback stores go
    there). Use as ``isolated = pytest.fixture(isolated_state)`` in a test module."""
    saved, saved_uri = dict(os.environ), _mlflow_tracking_uri()
    for name in list(os.environ):
        if name in CLIENT_VARIABLES or name.startswith("MLFLOW_"):
            del os.environ[name]
    data_home = tmp_path / "xdg"
    os.environ["XDG_DATA_HOME"] = str(data_home)
    _reset_client()
    try:
        yield data_home
    finally:
        os.environ.clear()
        os.environ.update(saved)
        _reset_client(saved_uri)


Answer = Reply | Exception | Callable[[str, dict[str, str]], Reply]


@dataclass
class FakeTransport:
    """Answers by path from queues (the last answer of a queue repeats); records every call."""

    answers: dict[str, list[Answer]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, str], str | bool]] = field(default_factory=list)

    def get(
        self, url: str, headers: Mapping[str, str], verify: str | bool, timeout: tuple[float, float]
    ) -> Reply:
        path = "/" + url.split("://", 1)[1].split("/", 1)[1]
        self.calls.append((path, dict(headers), verify))
        queue = self.answers.get(path.split("?")[0]) or self.answers.get(path)
        if not queue:
            raise Unreachable("no route in the fake")
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(path, dict(headers))
        return answer

    def paths(self) -> list[str]:
        return [path for path, _headers, _verify in self.calls]


@dataclass
class Waits:
    """A fake clock the policy's sleeps advance: waits are recorded, not slept."""

    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def fake_policy(waits: Waits, **changes: object) -> RetryPolicy:
    return replace(RetryPolicy(sleep=waits.sleep, clock=waits.clock, draw=lambda: 0.5), **changes)  # type: ignore[arg-type]


@dataclass
class RealWaits:
    """Real sleeps, recorded (end-to-end tests assert on what was waited, never on timing)."""

    slept: list[float] = field(default_factory=list)
    after_sleep: Callable[[], None] | None = None

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        time.sleep(seconds)
        if self.after_sleep is not None:
            self.after_sleep()


def json_reply(status: int, body: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, body.encode(), headers or {})
