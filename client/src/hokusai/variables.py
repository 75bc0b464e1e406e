"""The environment variables the client reads, named once (stdlib only, imports nothing).

The gateway's own processes read ``HOKUSAI_*`` settings as well and refuse names they do not know;
they skip exactly ``CLIENT_VARIABLES`` (``authz/settings.py``), so a data scientist's shell with
the client configured can still run ``hokusai auth …`` and ``hokusai gateway up``.
"""

from __future__ import annotations

API_KEY = "HOKUSAI_API_KEY"
GATEWAY_URL = "HOKUSAI_GATEWAY_URL"
CA_CERT = "HOKUSAI_CA_CERT"
MOCK_MODE = "HOKUSAI_MOCK_MODE"
MLFLOW_FALLBACK = "HOKUSAI_MLFLOW_FALLBACK"
MLFLOW_OPTIONAL = "HOKUSAI_MLFLOW_OPTIONAL"

CLIENT_VARIABLES = (API_KEY, GATEWAY_URL, CA_CERT, MOCK_MODE, MLFLOW_FALLBACK, MLFLOW_OPTIONAL)
