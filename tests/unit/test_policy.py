"""The route → scope table: in step with MLflow's own API and with the Envoy routes."""

from __future__ import annotations

import importlib
import re

import pytest

from authz.check import routes as policy
from authz.keys import scopes
from authz.transports import wire
from cli import envoy_config

READ_VERBS = re.compile(
    r"^(search|get(?!OrCreate)|list|batchGet|query|calculate|createPresignedDownload)"
)


def mlflow_post_endpoints() -> dict[str, str]:
    """POST path (after /api/<version>/) → RPC name, from MLflow's service descriptors."""
    from mlflow.protos import databricks_pb2

    endpoints: dict[str, str] = {}
    for name in (
        "service_pb2",
        "model_registry_pb2",
        "webhooks_pb2",
        "datasets_pb2",
        "issues_pb2",
        "jobs_pb2",
        "prompt_optimization_pb2",
    ):
        try:
            module = importlib.import_module(f"mlflow.protos.{name}")
        except ImportError:
            continue
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                options = method.GetOptions()
                if not options.HasExtension(databricks_pb2.rpc):
                    continue
                for endpoint in options.Extensions[databricks_pb2.rpc].endpoints:
                    if endpoint.method == "POST":
                        endpoints[endpoint.path.lstrip("/")] = method.name
    return endpoints


def test_every_read_only_post_of_mlflow_is_listed_and_nothing_else() -> None:
    endpoints = mlflow_post_endpoints()
    reads = {
        path
        for path, rpc in endpoints.items()
        if READ_VERBS.match(rpc) and "{" not in path and "<" not in path
    }
    assert reads <= policy.READ_ONLY_POSTS, sorted(reads - policy.READ_ONLY_POSTS)
    assert set(endpoints) >= policy.READ_ONLY_POSTS, sorted(policy.READ_ONLY_POSTS - set(endpoints))


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/api/mlflow/api/2.0/mlflow/experiments/get", policy.READ),
        ("POST", "/api/mlflow/api/2.0/mlflow/runs/search", policy.READ),
        ("POST", "/api/mlflow/ajax-api/2.0/mlflow/runs/search?x=1", policy.READ),
        ("POST", "/api/mlflow/api/2.0/mlflow/runs/create", policy.WRITE),
        ("PUT", "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/0/a.bin", policy.WRITE),
        ("DELETE", "/api/mlflow/api/2.0/mlflow/experiments/search", policy.WRITE),
        ("POST", "/api/mlflow/api/2.0/mlflow/runs/search/../create", policy.WRITE),
        ("POST", "/api/mlflow/graphql", policy.WRITE),
    ],
)
def test_required_scope(method: str, path: str, scope: str) -> None:
    assert policy.required_scope(method, path) == scope


def test_scope_implications() -> None:
    assert scopes.grants(frozenset({"mlflow:write"}), policy.READ)
    assert not scopes.grants(frozenset({"mlflow:read"}), policy.WRITE)
    assert scopes.grants(frozenset({"admin"}), policy.WRITE)
    assert not scopes.grants(frozenset({"keys:manage"}), policy.READ)


# Routes that skip ext_authz, each for a reason: health probes, the keys REST API (which
# authenticates its callers itself with the same pipeline), the gateway's own pages (sign-in,
# sign-out, the docs every denial links, their static files: a person without a session must
# reach them), and /api/mlflow, which only redirects to /api/mlflow/.
PUBLIC = {
    wire.MLFLOW_HEALTH_PATH,
    wire.HEALTH_PATH,
    wire.KEYS_API_PREFIX,
    wire.SIGNIN_PATH,
    wire.SIGNOUT_PATH,
    wire.DOCS_PREFIX,
    wire.DOCS_PREFIX.rstrip("/"),
    wire.PAGES_STATIC_PREFIX,
    wire.MLFLOW_PREFIX.rstrip("/"),
}


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_every_envoy_route_is_authenticated_or_explicitly_public(transport: str) -> None:
    options = envoy_config.EnvoyOptions(transport=transport)  # type: ignore[arg-type]
    for route in envoy_config.routes(options):
        match = route["match"]
        path = match.get("path") or match.get("prefix")
        skips_authz = route.get("typed_per_filter_config", {}) == envoy_config.AUTHZ_OFF
        if "redirect" in route:  # the old /mlflow path: it forwards nothing, so no key is needed
            assert skips_authz and "route" not in route, route["name"]
            continue
        assert skips_authz == (path in PUBLIC), route["name"]
