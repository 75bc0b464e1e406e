"""Which scope a request needs: the route → scope rules, as data.

MLflow's REST API uses POST for some reads (searches, batch gets), so the method alone does not
decide: ``READ_ONLY_POSTS`` lists MLflow's POST endpoints that change nothing (taken from MLflow's
own service descriptors; ``tests/unit/test_policy.py`` checks the table against the installed
MLflow). ``/graphql`` is decided from the operation in its body, whatever the method
(``graphql.py``). Everything else follows HTTP semantics: safe methods read, the rest write. What
a key's scopes imply (``admin`` passes everything) is ``authz.scopes.grants``.

``BROWSER_PREFIXES`` / ``BROWSER_PATHS`` are the routes where a session cookie is a credential:
MLflow's UI (its page, static files, the ``ajax-api`` its pages call, GraphQL, artifact
downloads). MLflow's REST API for programs (``/api/mlflow/api/…``, apart from the artifact
paths the UI uses) takes keys only.
"""

from __future__ import annotations

import re

from authz.check import graphql
from authz.check.graphql import RequestBody
from authz.keys import scopes
from authz.transports import wire

READ = scopes.MLFLOW_READ
WRITE = scopes.MLFLOW_WRITE

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# MLflow endpoint suffixes (after /api/<version>/) whose POST form only reads.
READ_ONLY_POSTS = frozenset(
    {
        "mlflow/experiments/search",
        "mlflow/experiments/search-datasets",
        "mlflow/runs/search",
        "mlflow/registered-models/get-latest-versions",
        "mlflow/logged-models/search",
        "mlflow/datasets/search",
        "mlflow/traces/search",
        "mlflow/traces/batchGetInfos",
        "mlflow/traces/calculate-filter-correlation",
        "mlflow/traces/metrics",
        "mlflow/issues/search",
        "mlflow/prompt-optimization/jobs/search",
        "mlflow/artifacts/presigned-download-url",
    }
)

_MLFLOW_API = re.compile(r"/(?:ajax-)?api/[0-9]\.[0-9]/(.*)")
GRAPHQL_PATH = wire.MLFLOW_GRAPHQL_PATH

# Upstream paths (after the gateway prefix) of MLflow's UI, where a session is accepted.
BROWSER_PATHS = frozenset({"/", "/graphql", "/get-artifact", "/model-versions/get-artifact"})
BROWSER_PREFIXES = ("/static-files/", "/ajax-api/", "/api/2.0/mlflow-artifacts/")


def upstream_path(path: str) -> str:
    """The path MLflow sees: the gateway prefix removed, the query string dropped."""
    path = path.split("?", 1)[0]
    prefix = wire.MLFLOW_PREFIX.rstrip("/")
    if path.startswith(prefix):
        path = path[len(prefix) :] or "/"
    return path


def is_browser_route(path: str) -> bool:
    """Whether a session cookie is a credential on ``path`` (MLflow's UI and what it calls)."""
    if not path.startswith(wire.MLFLOW_PREFIX):
        return False
    upstream = upstream_path(path)
    return upstream in BROWSER_PATHS or upstream.startswith(BROWSER_PREFIXES)


def required_scope(method: str, path: str, body: RequestBody | None = None) -> str:
    """The scope a request needs: ``mlflow:read`` for reads, ``mlflow:write`` for changes."""
    if path.startswith(GRAPHQL_PATH):
        return READ if graphql.reads(method, body) else WRITE
    if method in SAFE_METHODS:
        return READ
    if method == "POST":
        match = _MLFLOW_API.fullmatch(upstream_path(path))
        if match and match[1].rstrip("/") in READ_ONLY_POSTS:
            return READ
    return WRITE
