"""Telemetry, declared in one place: metrics, Check spans, and the redacting logger every process
installs."""
