"""The reason table, the typed errors built from it, and MLflow's exceptions read back."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow.exceptions import MlflowException, RestException
from urllib3.exceptions import MaxRetryError, NewConnectionError, ResponseError

from authz.check.reasons import OUTCOMES, Reason, denial_body
from hokusai import errors, reasons
from hokusai.mlflow_errors import translate

DOCS = Path(__file__).resolve().parents[2] / "docs"
CONTEXT = errors.Context("https://gw:8443", reasons.Names(), "hk_live_AbCdEfGhIjKl", "live")


def test_the_table_covers_every_server_reason_with_its_status() -> None:
    for reason, outcome in OUTCOMES.items():
        assert reason.value in reasons.TABLE, reason
        assert reasons.TABLE[reason.value].status == outcome.status, reason
    assert {"not_found", "request_too_large", "mlflow_unavailable"} <= set(reasons.TABLE)


def test_anchors_match_the_gateway_docs_links() -> None:
    for reason in Reason:
        given = json.loads(denial_body(reason))["docs"]
        assert reasons.docs_url("https://gw", reason.value) == "https://gw" + given


def test_client_codes_have_sections_in_the_client_guide() -> None:
    guide = (DOCS / "python-client.md").read_text()
    for code in reasons.CLIENT_CODES:
        assert (
            re.search(rf"^#+ .*\{{#{reasons.anchor(code)}\}}$|^#+ {code}$", guide, re.M)
            or f'<a id="{reasons.anchor(code)}"></a>' in guide
        ), code


@pytest.mark.parametrize("code", [*reasons.TABLE, None, "no_such_code"])
def test_steps_are_filled_in(code: str | None) -> None:
    for step in reasons.steps(code, reasons.Names(), "hk_live_AbCdEfGhIjKl", "live"):
        assert step and "{" not in step and "}" not in step


@pytest.mark.parametrize(
    ("reason", "cls"),
    [
        ("revoked", errors.AuthenticationError),
        ("expired", errors.AuthenticationError),
        ("insufficient_scope", errors.PermissionDeniedError),
        ("ip_not_allowed", errors.PermissionDeniedError),
        ("rate_limited", errors.RateLimitedError),
        ("unavailable", errors.GatewayUnavailableError),
        ("mlflow_unavailable", errors.MLflowUnavailableError),
        ("not_found", errors.ConfigurationError),
    ],
)
def test_a_gateway_body_decides_the_class(reason: str, cls: type[errors.HokusaiError]) -> None:
    body = {"error": reason, "message": "from the gateway", "docs": f"/docs/errors#{reason}"}
    error = errors.from_denial(reasons.TABLE[reason].status or 400, body, CONTEXT, 3.0)
    assert type(error) is cls
    assert (error.reason, error.message) == (reason, "from the gateway")
    assert error.docs_url == f"https://gw:8443/docs/errors#{reason}"
    assert error.steps == reasons.steps(reason, CONTEXT.names, CONTEXT.key or "", "live")
    text = str(error)
    assert text.startswith(f"from the gateway [{reason}]") and "  → " in text
    assert "docs: https://gw:8443/docs/errors#" in text


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (502, errors.MLflowUnavailableError),
        (503, errors.MLflowUnavailableError),
        (504, errors.MLflowUnavailableError),
        (401, errors.AuthenticationError),
        (403, errors.PermissionDeniedError),
        (429, errors.RateLimitedError),
        (500, errors.HokusaiError),
    ],
)
def test_without_a_reason_the_status_decides(status: int, cls: type[errors.HokusaiError]) -> None:
    error = errors.from_denial(status, {}, CONTEXT)
    assert type(error) is cls and error.reason is None and error.status == status
    assert error.steps


def test_rate_limited_carries_retry_after() -> None:
    error = errors.from_denial(429, {"error": "rate_limited"}, CONTEXT, retry_after=7.0)
    assert isinstance(error, errors.RateLimitedError) and error.retry_after == 7.0
    assert "(retry after 7 s)" in str(error).splitlines()[0]


def test_unavailable_errors_share_a_base() -> None:
    assert issubclass(errors.GatewayUnavailableError, errors.UnavailableError)
    assert issubclass(errors.MLflowUnavailableError, errors.UnavailableError)
    assert not issubclass(errors.AuthenticationError, errors.UnavailableError)


# --- MLflow's exceptions, translated -------------------------------------------------------------


def raised_by_mlflow(cause: BaseException) -> MlflowException:
    """What MLflow's http_request raises: a new exception while handling ``cause``."""
    try:
        try:
            raise cause
        except Exception as exc:
            raise MlflowException(f"API request to https://gw failed with exception {exc}")  # noqa: B904
    except MlflowException as outer:
        return outer


def exhausted(status: int) -> MlflowException:
    reason = ResponseError(ResponseError.SPECIFIC_ERROR.format(status_code=status))
    pool: Any = None  # urllib3 only keeps it for the message
    return raised_by_mlflow(requests.exceptions.RetryError(MaxRetryError(pool, "/x", reason)))


def test_a_denial_body_kept_by_mlflow() -> None:
    body = json.loads(denial_body(Reason.REVOKED))
    error = translate(RestException(body), CONTEXT)
    assert isinstance(error, errors.AuthenticationError) and error.reason == "revoked"
    assert error.status == 401


@pytest.mark.parametrize(
    ("status", "mlflow_up", "cls"),
    [
        (429, True, errors.RateLimitedError),
        (503, True, errors.GatewayUnavailableError),
        (503, False, errors.MLflowUnavailableError),
        (502, True, errors.MLflowUnavailableError),
        (504, True, errors.MLflowUnavailableError),
    ],
)
def test_retries_exhausted(status: int, mlflow_up: bool, cls: type[errors.HokusaiError]) -> None:
    error = translate(exhausted(status), CONTEXT, lambda: mlflow_up)
    assert type(error) is cls and error.status == status


def test_connection_and_tls_failures() -> None:
    pool: Any = None
    refused = NewConnectionError(pool, "Failed to establish a new connection: refused")
    error = translate(
        raised_by_mlflow(requests.exceptions.ConnectionError(MaxRetryError(pool, "/x", refused))),
        CONTEXT,
    )
    assert isinstance(error, errors.GatewayUnavailableError) and error.reason == "unreachable"
    error = translate(
        raised_by_mlflow(requests.exceptions.SSLError("certificate verify failed")), CONTEXT
    )
    assert isinstance(error, errors.GatewayUnavailableError) and error.reason == "tls"


def test_mlflow_s_own_errors_pass_through() -> None:
    own = RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no experiment"})
    assert translate(own, CONTEXT) is None
    assert translate(MlflowException("bad param"), CONTEXT) is None
    assert translate(ValueError("x"), CONTEXT) is None
