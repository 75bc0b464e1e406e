"""What the doctor examines: the configuration a client would use, and where it came from.

The client's own variables come first (``HOKUSAI_GATEWAY_URL``, ``HOKUSAI_API_KEY``,
``HOKUSAI_CA_CERT``); for a stock MLflow client the MLflow ones stand in for each that is unset
(``MLFLOW_TRACKING_URI``, ``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``). Every
piece of advice names the variable actually in use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from hokusai.reasons import Names

UrlKind = Literal["gateway", "tracking"]  # https://host[:port] vs …/api/mlflow (MLflow's URI)
HOKUSAI_NAMES = Names()
MLFLOW_NAMES = Names(
    key="MLFLOW_TRACKING_TOKEN", url="MLFLOW_TRACKING_URI", ca="MLFLOW_TRACKING_SERVER_CERT_PATH"
)


@dataclass(frozen=True, slots=True)
class Target:
    """The configuration under test. ``key`` never appears in a ``repr``."""

    url: str | None
    key: str | None = field(default=None, repr=False)
    ca: str | None = None
    insecure: str | None = None  # MLFLOW_TRACKING_INSECURE_TLS as written (MLflow parses it)
    basic_auth: bool = False  # a stock MLflow client would send username/password instead
    timeout: float = 5.0
    names: Names = HOKUSAI_NAMES
    url_kind: UrlKind = "gateway"
    write: bool = False  # also try a write: run, param, metric, artifact round trip, delete


def from_env(environ: Mapping[str, str] | None = None) -> Target:
    """The Python client's view — HOKUSAI_* first, each unset one replaced by its MLFLOW_* twin —
    unless only MLFLOW_TRACKING_TOKEN holds a key: then a stock MLflow client's view, which reads
    its own variables only (``mlflow_env``), even where ``hokusai gateway env`` set both kinds."""
    env = os.environ if environ is None else environ
    if not env.get(HOKUSAI_NAMES.key) and env.get(MLFLOW_NAMES.key):
        return mlflow_env(env)

    def pick(ours: str, theirs: str, default: str) -> tuple[str | None, str]:
        for name in (ours, theirs):
            if env.get(name):
                return env[name], name
        return None, default

    url, url_name = pick(HOKUSAI_NAMES.url, MLFLOW_NAMES.url, HOKUSAI_NAMES.url)
    ca, ca_name = pick(HOKUSAI_NAMES.ca, MLFLOW_NAMES.ca, HOKUSAI_NAMES.ca)
    return Target(
        url=url,
        key=env.get(HOKUSAI_NAMES.key) or None,
        ca=ca,
        insecure=env.get("MLFLOW_TRACKING_INSECURE_TLS") or None,
        names=Names(key=HOKUSAI_NAMES.key, url=url_name, ca=ca_name),
        url_kind="tracking" if url_name == MLFLOW_NAMES.url else "gateway",
    )


def mlflow_env(environ: Mapping[str, str] | None = None) -> Target:
    """Only the MLFLOW_* variables a stock MLflow client reads (``hokusai doctor``'s view)."""
    env = os.environ if environ is None else environ
    return Target(
        url=env.get("MLFLOW_TRACKING_URI") or None,
        key=env.get("MLFLOW_TRACKING_TOKEN") or None,
        ca=env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None,
        insecure=env.get("MLFLOW_TRACKING_INSECURE_TLS") or None,
        basic_auth=bool(
            env.get("MLFLOW_TRACKING_USERNAME") and env.get("MLFLOW_TRACKING_PASSWORD")
        ),
        names=MLFLOW_NAMES,
        url_kind="tracking",
    )


def insecure_flag(value: str | None) -> bool | None:
    """MLflow's own boolean parsing; None when MLflow would reject the value."""
    if value is None:
        return False
    lowered = value.lower()
    return lowered in ("true", "1") if lowered in ("true", "false", "1", "0") else None
