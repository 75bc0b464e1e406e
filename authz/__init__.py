"""Hokusai Gateway: API-key authorization for Envoy in front of MLflow and other HTTP services."""

__version__ = "0.1.0"
