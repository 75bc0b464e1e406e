"""hokusai — MLflow through a Hokusai gateway with one API key.

``setup()`` reads ``HOKUSAI_API_KEY`` and ``HOKUSAI_GATEWAY_URL``, checks the connection, points
MLflow at the gateway and returns a ``Status``; ``experiment_manager()`` gives the manager for the
mode it chose. Importing this package does not import MLflow.
"""

from __future__ import annotations

from hokusai.connection import experiment_manager, setup
from hokusai.errors import (
    AuthenticationError,
    ConfigurationError,
    GatewayUnavailableError,
    HokusaiError,
    MLflowUnavailableError,
    PermissionDeniedError,
    RateLimitedError,
    TrackingModeWarning,
    UnavailableError,
)
from hokusai.manager import (
    BaseExperimentManager,
    DisabledExperimentManager,
    ModelVersion,
    Run,
    RunData,
)
from hokusai.mlflow_manager import ExperimentManager
from hokusai.mock import MockExperimentManager
from hokusai.status import Identity, Mode, Status

__version__ = "0.1.0"


__all__ = [
    "AuthenticationError",
    "BaseExperimentManager",
    "ConfigurationError",
    "DisabledExperimentManager",
    "ExperimentManager",
    "GatewayUnavailableError",
    "HokusaiError",
    "Identity",
    "MLflowUnavailableError",
    "MockExperimentManager",
    "Mode",
    "ModelVersion",
    "PermissionDeniedError",
    "RateLimitedError",
    "Run",
    "RunData",
    "Status",
    "TrackingModeWarning",
    "UnavailableError",
    "experiment_manager",
    "setup",
]
