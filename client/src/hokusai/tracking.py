"""Pointing MLflow where ``setup()`` decided: the gateway with the key, or a local store.

MLflow is configured through its environment variables, which it reads on every request and
child processes inherit, and — only if MLflow is already imported — ``mlflow.set_tracking_uri``,
whose value would otherwise win over the variable. Nothing here imports MLflow.

Remote mode bounds MLflow's own retries instead of adding a loop around them (MLflow retries
408/429/500/502/503/504 and honours Retry-After; its defaults — 7 retries, factor 2 — can wait
minutes). Set only where the user has not set them (their value wins):

=================================== ===== ================================================
MLFLOW_HTTP_REQUEST_MAX_RETRIES     4     5 attempts in all
MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR  1     urllib3 sleeps 0, 2, 4, 8 s between them
MLFLOW_HTTP_REQUEST_BACKOFF_JITTER  1.0   plus up to 1 s each (from the second sleep on)
MLFLOW_HTTP_REQUEST_TIMEOUT         30    seconds per attempt (connect, and each read)
=================================== ===== ================================================

So at most 14 s + 3 s of jitter = 17 s of backoff per MLflow call; for 429 and 503 the server's
Retry-After replaces the backoff (the gateway sends 1 s with a 503, and the key's refill time
with a 429). A server that accepts connections and never answers costs at most 5 × 30 + 17 =
167 s before the error.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path

from hokusai import localstore, mlflow_auth
from hokusai.errors import ConfigurationError
from hokusai.settings import Settings

REMOTE_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "1.0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
AUTH = "MLFLOW_TRACKING_AUTH"
URI = "MLFLOW_TRACKING_URI"
CERT = "MLFLOW_TRACKING_SERVER_CERT_PATH"
INSECURE = "MLFLOW_TRACKING_INSECURE_TLS"
ENTRY_POINT_GROUP = "mlflow.request_auth_provider"


def plugin_installed() -> bool:
    """Whether MLflow will find the auth provider (it looks it up by entry point)."""
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=mlflow_auth.NAME)
    return any(ep.value.startswith("hokusai.mlflow_auth") for ep in found)


def preflight(settings: Settings, env: MutableMapping[str, str] | None = None) -> None:
    """What would make the chosen modes fail later, refused now — before any network I/O."""
    env = os.environ if env is None else env
    if settings.mock:
        return
    if not plugin_installed():
        raise ConfigurationError(
            "the hokusai-client distribution is not installed, so MLflow cannot find its auth "
            "plugin (entry point mlflow.request_auth_provider)",
            reason="configuration",
            steps=("Install it: pip install ./client (or the hokusai-client wheel).",),
        )
    if settings.fallback and not localstore.available():
        raise ConfigurationError(
            f"HOKUSAI_MLFLOW_FALLBACK: {localstore.MISSING}",
            reason="configuration",
            steps=("pip install mlflow (its SQL store), or turn the fallback off.",),
        )
    if settings.ca_cert and env.get(INSECURE, "").lower() in ("true", "1"):
        raise ConfigurationError(
            f"{INSECURE} is set together with a CA certificate ({settings.names.ca}): MLflow "
            "refuses that combination",
            reason="configuration",
            steps=(f"Unset {INSECURE}: the client verifies with the CA.",),
        )


def use_remote(settings: Settings, env: MutableMapping[str, str] | None = None) -> tuple[str, ...]:
    """MLflow → the gateway, with the key; returns warnings about settings that interfere."""
    env = os.environ if env is None else env
    assert settings.tracking_uri is not None
    warnings = _interference(env)
    env[URI] = settings.tracking_uri
    env[AUTH] = mlflow_auth.NAME
    if settings.ca_cert:
        env[CERT] = settings.ca_cert
    for name, value in REMOTE_DEFAULTS.items():
        env.setdefault(name, value)
    mlflow_auth.use_key(settings.key)
    _set_tracking_uri(settings.tracking_uri)
    return warnings


def use_local(directory: Path, env: MutableMapping[str, str] | None = None) -> str:
    """MLflow → a local store in ``directory``; returns its tracking URI."""
    env = os.environ if env is None else env
    directory.mkdir(parents=True, exist_ok=True)
    store = localstore.uri(directory)
    env[URI] = store
    if env.get(AUTH) == mlflow_auth.NAME:
        del env[AUTH]
    mlflow_auth.use_key(None)
    _set_tracking_uri(store)
    return store


_MOCK_DIRS: list[Path] = []


def use_mock(env: MutableMapping[str, str] | None = None) -> str:
    """MLflow → a throwaway local store (removed at exit): stray mlflow.* calls stay here."""
    directory = Path(tempfile.mkdtemp(prefix="hokusai-mock-"))
    if not _MOCK_DIRS:
        atexit.register(_remove_mock_dirs)
    _MOCK_DIRS.append(directory)
    return use_local(directory, env)


def _remove_mock_dirs() -> None:
    for directory in _MOCK_DIRS:
        shutil.rmtree(directory, ignore_errors=True)


def _interference(env: MutableMapping[str, str]) -> tuple[str, ...]:
    found = []
    if env.get(AUTH) not in (None, "", mlflow_auth.NAME):
        found.append(
            f"{AUTH}={env[AUTH]} was replaced by {mlflow_auth.NAME}: one auth plugin at a time"
        )
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME"):
        if env.get(name):
            found.append(f"{name} is set but not used: the gateway gets the Hokusai key")
    if env.get("MLFLOW_REGISTRY_URI"):
        found.append(
            "MLFLOW_REGISTRY_URI is set: models are registered there, not through the gateway"
        )
    if env.get(INSECURE, "").lower() in ("true", "1"):
        found.append(f"{INSECURE} is set: MLflow does not verify the gateway's certificate")
    return tuple(found)


def _set_tracking_uri(uri: str) -> None:
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(uri)


@contextmanager
def remote_environment(settings: Settings) -> Iterator[None]:
    """MLflow's auth, CA and retry variables for ``settings`` for the duration of the block, the
    previous ones (and key) restored after; the tracking URI is left alone (pass it
    explicitly). For probes that must not change how the rest of the process tracks."""
    names = (AUTH, CERT, *REMOTE_DEFAULTS)
    saved = {name: os.environ.get(name) for name in names}
    previous_key = mlflow_auth.configured_key()
    os.environ[AUTH] = mlflow_auth.NAME
    if settings.ca_cert:
        os.environ[CERT] = settings.ca_cert
    for name, value in REMOTE_DEFAULTS.items():
        os.environ.setdefault(name, value)
    mlflow_auth.use_key(settings.key)
    try:
        yield
    finally:
        for name, before in saved.items():
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before
        mlflow_auth.use_key(previous_key)
