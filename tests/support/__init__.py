"""Helpers shared by integration and end-to-end tests (no fixtures: see conftest.py)."""
