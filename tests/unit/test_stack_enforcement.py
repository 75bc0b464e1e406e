"""``hokusai gateway up``: with the limit enforced in the Check, Envoy calls no RateLimitService,
and the authz child is told where the limit is enforced (its environment is built, not
inherited)."""

from __future__ import annotations

from pathlib import Path

import pytest

from authz.settings import Settings
from cli import envoy_config
from cli.stack import LocalStack, StackOptions


def stack(tmp_path: Path, enforcement: str, extra: dict[str, str] | None = None) -> LocalStack:
    local = LocalStack(
        StackOptions(tmp_path, extra_authz_env=extra or {}),
        Settings(rate_limit_enforcement=enforcement, rate_limit_mode="approximate"),
    )
    local.record.mlflow_url = "http://127.0.0.1:5000"
    local.record.database_url = "postgresql://u@127.0.0.1:1/db"
    local.record.redis_url = "redis://127.0.0.1:2/0"
    return local


def filters(options: envoy_config.EnvoyOptions) -> list[str]:
    return [f["name"] for f in envoy_config.http_filters(options)]


@pytest.mark.parametrize(("enforcement", "envoy_filter"), [("envoy", True), ("check", False)])
def test_ratelimit_filter_follows_the_enforcement(
    tmp_path: Path, enforcement: str, envoy_filter: bool
) -> None:
    local = stack(tmp_path, enforcement)
    options = local.envoy_options()
    assert ("envoy.filters.http.ratelimit" in filters(options)) is envoy_filter
    assert local.authz_env()["HOKUSAI_RATE_LIMIT_ENFORCEMENT"] == enforcement
    assert local.authz_env()["HOKUSAI_RATE_LIMIT_MODE"] == "approximate"


def test_an_authz_override_decides_for_envoy_too(tmp_path: Path) -> None:
    local = stack(tmp_path, "envoy", {"HOKUSAI_RATE_LIMIT_ENFORCEMENT": "check"})
    assert "envoy.filters.http.ratelimit" not in filters(local.envoy_options())


def test_make_up_runs_the_default_check_and_exact_leases(tmp_path: Path) -> None:
    """The defaults (what `make up` runs): the Check decides with the exact lease limiter and
    Envoy has no global ratelimit filter."""
    local = LocalStack(StackOptions(tmp_path), Settings())
    local.record.mlflow_url = "http://127.0.0.1:5000"
    assert "envoy.filters.http.ratelimit" not in filters(local.envoy_options())
    assert local.authz_env()["HOKUSAI_RATE_LIMIT_ENFORCEMENT"] == "check"
    assert local.authz_env()["HOKUSAI_RATE_LIMIT_MODE"] == "exact"
