"""The closed set of check outcomes: one table gives each its HTTP status, message and docs anchor.

The same value is the metric label, the log field and the ``error`` code in every denial body, so
operators, dashboards and users all speak of an outcome by one name. A denial's answer is built
here once — its body (``denial_body``) and its headers (``denial_headers``) — and every place that
answers for a refused key uses them: the gRPC and HTTP transports, the keys REST API, and the
Envoy and NGINX configuration generators.

Every error body the gateway sends, denial or not (Envoy's own 404/429/431/503, the keys REST
API's errors), has one shape, built only by ``error_body``::

    {"error": "revoked", "error_code": "UNAUTHENTICATED",
     "message": "The API key has been revoked: ask for a new one.", "docs": "/docs/errors#revoked"}

``error`` is the gateway's own code; ``error_code`` is MLflow's for the status
(``MLFLOW_ERROR_CODES``), because the stock MLflow client raises ``RestException`` with the body's
``error_code`` (``INTERNAL_ERROR`` when there is none) and the MLflow UI shows
``error_code: message``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    ALLOWED = "allowed"
    MISSING_KEY = "missing_key"
    MULTIPLE_CREDENTIALS = "multiple_credentials"
    MALFORMED_KEY = "malformed_key"
    WRONG_ENVIRONMENT = "wrong_environment"
    UNKNOWN_KEY = "unknown_key"
    INVALID_SECRET = "invalid_secret"  # noqa: S105 - a reason code
    REVOKED = "revoked"
    EXPIRED = "expired"
    IP_NOT_ALLOWED = "ip_not_allowed"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INACTIVE = "inactive"  # unused for longer than the policy's inactivity expiry (issue 15)
    # Envoy's own answers when an upstream behind the gateway is down (cli/envoy_config.py's
    # local replies): the key was never the problem.
    MLFLOW_UNAVAILABLE = "mlflow_unavailable"
    KEYS_API_UNAVAILABLE = "keys_api_unavailable"
    # browser sessions (issue 13)
    INVALID_SESSION = "invalid_session"
    SESSION_EXPIRED = "session_expired"
    USER_DISABLED = "user_disabled"
    CROSS_SITE_REQUEST = "cross_site_request"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    message: str
    # RFC 6750 error code for WWW-Authenticate ("" = none: the request carried no credential).
    bearer_error: str

    @property
    def mlflow_code(self) -> str:
        """MLflow's error code for this outcome (``MLFLOW_ERROR_CODES``, by its status)."""
        return mlflow_error_code(self.status)


OUTCOMES: dict[Reason, Outcome] = {
    Reason.ALLOWED: Outcome(200, "The key is valid.", ""),
    Reason.MISSING_KEY: Outcome(
        401, "No API key was sent: use 'Authorization: Bearer <key>' or the X-API-Key header.", ""
    ),
    Reason.MULTIPLE_CREDENTIALS: Outcome(
        401, "More than one credential was sent: send exactly one API key.", "invalid_request"
    ),
    Reason.MALFORMED_KEY: Outcome(
        401,
        "The API key is malformed or mistyped: copy it again exactly as it was shown.",
        "invalid_token",
    ),
    Reason.WRONG_ENVIRONMENT: Outcome(
        401, "This gateway does not accept keys of that environment (live/test).", "invalid_token"
    ),
    Reason.UNKNOWN_KEY: Outcome(401, "The API key is not known to this gateway.", "invalid_token"),
    Reason.INVALID_SECRET: Outcome(
        401, "The API key is not valid: its secret part does not match.", "invalid_token"
    ),
    Reason.REVOKED: Outcome(
        401, "The API key has been revoked: ask for a new one.", "invalid_token"
    ),
    Reason.EXPIRED: Outcome(
        401, "The API key has expired: rotate it or ask for a new one.", "invalid_token"
    ),
    Reason.IP_NOT_ALLOWED: Outcome(
        403,
        "The API key may not be used from this address: see its IP allowlist.",
        "insufficient_scope",
    ),
    Reason.INSUFFICIENT_SCOPE: Outcome(
        403,
        "The API key lacks the scope this request needs (e.g. mlflow:write for changes).",
        "insufficient_scope",
    ),
    Reason.RATE_LIMITED: Outcome(429, "Too many requests for this API key: retry later.", ""),
    Reason.UNAVAILABLE: Outcome(503, "The key could not be verified right now: retry shortly.", ""),
    Reason.INACTIVE: Outcome(
        401,
        "The API key was unused for longer than the gateway's inactivity limit: ask for a new one.",
        "invalid_token",
    ),
    Reason.MLFLOW_UNAVAILABLE: Outcome(
        503,
        "MLflow is not reachable through the gateway right now; your key is fine: retry shortly.",
        "",
    ),
    Reason.KEYS_API_UNAVAILABLE: Outcome(
        503,
        "The keys API is not reachable through the gateway right now; your key is fine: "
        "retry shortly.",
        "",
    ),
    Reason.INVALID_SESSION: Outcome(
        401, "The session is not valid: sign in again at /login.", "invalid_token"
    ),
    Reason.SESSION_EXPIRED: Outcome(
        401,
        "The session has ended (signed out, unused for too long, or too old): sign in again.",
        "invalid_token",
    ),
    Reason.USER_DISABLED: Outcome(
        401, "The key's user has been disabled: ask an administrator.", "invalid_token"
    ),
    Reason.CROSS_SITE_REQUEST: Outcome(
        403,
        "A change made with a browser session must come from the gateway's own pages: "
        "this request came from another site and was refused.",
        "",
    ),
}

# MLflow's error code (mlflow.protos.databricks_pb2.ErrorCode) for each status a gateway error
# carries: the code MLflow's own server answers that status with (mlflow/exceptions.py,
# ERROR_CODE_TO_HTTP_STATUS), except 422, which MLflow never sends (INVALID_PARAMETER_VALUE is its
# code for a bad value). One code per status, so every reason — including any added later — has
# its MLflow code: the 401s are UNAUTHENTICATED, the 403s PERMISSION_DENIED, the 429
# RESOURCE_EXHAUSTED (what MLflow itself derives from a 429; its UI treats no 429 code specially)
# and the 503s TEMPORARILY_UNAVAILABLE.
MLFLOW_ERROR_CODES: dict[int, str] = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    409: "RESOURCE_CONFLICT",
    422: "INVALID_PARAMETER_VALUE",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
}

DOCS_PATH = "/docs/errors"
RETRY_AFTER_UNAVAILABLE = "1"  # seconds: a 503 is a momentary state (database or cache away)


def mlflow_error_code(status: int) -> str:
    """MLflow's code for ``status``: the table's, else BAD_REQUEST (4xx) or INTERNAL_ERROR."""
    return MLFLOW_ERROR_CODES.get(status) or ("BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")


def docs_link(error: str, docs_base: str = DOCS_PATH) -> str:
    """The anchor of ``error``'s section in the errors guide (``revoked`` → ``…#revoked``)."""
    return f"{docs_base}#{error.replace('_', '-')}"


def error_body(error: str, status: int, message: str, docs: str) -> bytes:
    """The one JSON shape of every error the gateway answers with (see the module docstring)."""
    return json.dumps(
        {"error": error, "error_code": mlflow_error_code(status), "message": message, "docs": docs}
    ).encode()


def denial_body(reason: Reason, docs_base: str = DOCS_PATH) -> bytes:
    """A denial's body: the reason, MLflow's code, one helpful sentence, the docs link."""
    outcome = OUTCOMES[reason]
    return error_body(
        reason.value, outcome.status, outcome.message, docs_link(reason.value, docs_base)
    )


def www_authenticate(reason: Reason) -> str | None:
    """The RFC 6750 challenge for 401/403 denials; None for statuses that carry none."""
    outcome = OUTCOMES[reason]
    if outcome.status not in (401, 403):
        return None
    if not outcome.bearer_error:
        return 'Bearer realm="hokusai"'
    return f'Bearer realm="hokusai", error="{outcome.bearer_error}"'


def denial_headers(reason: Reason) -> list[tuple[str, str]]:
    """The headers of every denial: JSON, never cached, the RFC 6750 challenge (401/403) and
    ``retry-after`` on 503. An in-Check 429 adds its limit's numbers (``ratelimit_headers``)."""
    headers = [("content-type", "application/json"), ("cache-control", "no-store")]
    challenge = www_authenticate(reason)
    if challenge:
        headers.append(("www-authenticate", challenge))
    if OUTCOMES[reason].status == 503:
        headers.append(("retry-after", RETRY_AFTER_UNAVAILABLE))
    return headers


SIGNIN_REDIRECT_STATUS = 302


def signin_redirect_headers(location: str) -> list[tuple[str, str]]:
    """The headers of the 302 that sends a browser's refused page load to the sign-in page."""
    return [("location", location), ("cache-control", "no-store")]
