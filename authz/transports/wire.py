"""Names shared between the authz servers and Envoy's (or NGINX's) configuration.

The Envoy configuration generator imports these, so a header or metadata name exists once.
"""

from __future__ import annotations

# Identity headers authz adds for the upstream; any client-sent x-hokusai-* header is stripped
# before authz runs, so the upstream can trust them.
HEADER_PREFIX = "x-hokusai-"
USER_ID_HEADER = "x-hokusai-user-id"
KEY_ID_HEADER = "x-hokusai-key-id"
SCOPES_HEADER = "x-hokusai-scopes"
IDENTITY_HEADERS = (USER_ID_HEADER, KEY_ID_HEADER, SCOPES_HEADER)

# Per-key limits, as headers (HTTP transport: Envoy's dynamic_metadata_from_headers turns them
# into dynamic metadata) and as dynamic-metadata keys (gRPC transport) — the same names in both.
RATE_LIMIT_HEADER = "x-hokusai-rate-limit"
BURST_HEADER = "x-hokusai-burst"
# On a denial with a key id: the reason, beside the key id, for Envoy's access logs (HTTP
# transport: check-response headers turned into metadata, never sent to the client).
REASON_HEADER = "x-hokusai-reason"
METADATA_HEADERS = (KEY_ID_HEADER, USER_ID_HEADER, RATE_LIMIT_HEADER, BURST_HEADER, REASON_HEADER)

# Where Envoy files the Check server's dynamic metadata (the ext_authz filter's own name).
METADATA_NAMESPACE = "envoy.filters.http.ext_authz"

# Credentials the client may send; all are removed before the upstream.
AUTHORIZATION_HEADER = "authorization"
API_KEY_HEADER = "x-api-key"
API_KEY_QUERY_PARAM = "api_key"
CREDENTIAL_HEADERS = (AUTHORIZATION_HEADER, API_KEY_HEADER)

# HTTP transport: Envoy's http_service sends the original path after this prefix, and honours
# this response header listing the request headers to remove.
HTTP_CHECK_PATH_PREFIX = "/check"
HEADERS_TO_REMOVE_HEADER = "x-envoy-auth-headers-to-remove"
HEALTH_PATH = "/health"

# Envoy's global rate-limit and gRPC access-log names.
RATE_LIMIT_DOMAIN = "hokusai"
RATE_LIMIT_DESCRIPTOR_KEY = "key_id"
ACCESS_LOG_NAME = "hokusai"
# The limit's numbers on responses to the client (both enforcement modes; 429s add retry-after).
RATE_LIMIT_RESPONSE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")

# Routes on the gateway.
MLFLOW_PREFIX = "/api/mlflow/"
OLD_MLFLOW_PATH = "/mlflow"  # earlier instructions' path: redirected to MLFLOW_PREFIX
MLFLOW_HEALTH_PATH = "/api/mlflow/health/mlflow"
KEYS_API_PREFIX = "/api/v1/auth/"
# Browser sessions (issue 13): what a browser sends that the Check reads (besides the host), and
# the routes of the gateway's own pages and of MLflow's who-am-I calls (both on the keys API).
BROWSER_HEADERS = ("cookie", "origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest")
MLFLOW_GRAPHQL_PATH = MLFLOW_PREFIX + "graphql"
SIGNIN_PATH = "/login"
SIGNOUT_PATH = "/logout"
DOCS_PREFIX = "/docs/"
PAGES_STATIC_PREFIX = "/_hokusai/static/"
MLFLOW_ACCOUNT_PATHS = (
    MLFLOW_PREFIX + "ajax-api/2.0/mlflow/users/current",
    MLFLOW_PREFIX + "ajax-api/3.0/mlflow/users/roles/list",
    MLFLOW_PREFIX + "ajax-api/3.0/mlflow/users/current/permissions",
)
