"""Every place that answers for a refused key answers alike: the reason table's status, body and
headers (``authz.check.reasons.denial_headers``) — gRPC, HTTP, the keys REST API, and the NGINX
and Envoy configuration for authz's own 503. And every error body of every route has the one
shape, with MLflow's ``error_code`` for its status."""

from __future__ import annotations

import json
from typing import Any

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from authz.api.app import error_response
from authz.api.auth import denial_response as api_denial
from authz.check.reasons import (
    MLFLOW_ERROR_CODES,
    OUTCOMES,
    Reason,
    denial_body,
    denial_headers,
    mlflow_error_code,
)
from authz.transports.envoy import denial_bytes
from authz.transports.http import denial_response as http_denial
from cli import envoy_config, nginx_config

DOCS = "https://docs.example/errors"
DENIALS = [reason for reason in Reason if reason is not Reason.ALLOWED]


def _http_head(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    pairs = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]
    return int(status_line.split()[1]), [p for p in pairs if p[0] != "content-length"], body


@pytest.mark.parametrize("reason", DENIALS)
def test_grpc_http_and_the_api_send_the_same_denial(reason: Reason) -> None:
    expected = denial_headers(reason)
    assert ("cache-control", "no-store") in expected
    grpc = CheckResponse.FromString(denial_bytes(reason, DOCS)).denied_response
    assert [(h.header.key, h.header.value) for h in grpc.headers] == expected
    assert grpc.status.code == OUTCOMES[reason].status
    assert grpc.body.encode() == denial_body(reason, DOCS)
    status, headers, body = _http_head(http_denial(reason, DOCS))
    assert (status, headers, body) == (OUTCOMES[reason].status, expected, denial_body(reason, DOCS))
    api = api_denial(reason, DOCS)
    assert api.status_code == OUTCOMES[reason].status and api.body == denial_body(reason, DOCS)
    assert {k: v for k, v in api.headers.items() if k != "content-length"} == dict(expected)


def test_the_configured_503s_use_the_same_headers() -> None:
    unavailable = dict(denial_headers(Reason.UNAVAILABLE))
    conf = nginx_config.render(nginx_config.NginxOptions())
    assert f"add_header Retry-After {unavailable['retry-after']} always;" in conf
    assert f"add_header Cache-Control {unavailable['cache-control']} always;" in conf
    mapper = envoy_config.local_reply_config(envoy_config.EnvoyOptions())["mappers"][0]
    added = {h["header"]["key"]: h["header"]["value"] for h in mapper["headers_to_add"]}
    assert added == {k: unavailable[k] for k in ("retry-after", "cache-control")}


# --- one shape, MLflow's code: every error body of every route ---------------------------------

SHAPE = {"error", "error_code", "message", "docs"}


@pytest.mark.parametrize("reason", DENIALS)
def test_each_reason_carries_the_mlflow_code_of_its_status(reason: Reason) -> None:
    """The stock MLflow client raises the body's error_code; MLflow pairs each code with one status
    (mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS), and the gateway's agrees with it."""
    from mlflow.exceptions import ERROR_CODE_TO_HTTP_STATUS

    body = json.loads(denial_body(reason))
    assert set(body) == SHAPE and body["error"] == reason.value
    assert body["error_code"] == OUTCOMES[reason].mlflow_code
    assert ERROR_CODE_TO_HTTP_STATUS[body["error_code"]] == OUTCOMES[reason].status


def test_the_mlflow_code_table_is_mlflow_s() -> None:
    from mlflow.exceptions import ERROR_CODE_TO_HTTP_STATUS
    from mlflow.protos.databricks_pb2 import ErrorCode

    for status, code in MLFLOW_ERROR_CODES.items():
        ErrorCode.Value(code)  # a code MLflow knows
        if status != 422:  # MLflow never answers 422; INVALID_PARAMETER_VALUE is its bad value
            assert ERROR_CODE_TO_HTTP_STATUS[code] == status, code
    assert mlflow_error_code(431) == "BAD_REQUEST" and mlflow_error_code(502) == "INTERNAL_ERROR"
    expected = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED"}
    assert expected.items() <= MLFLOW_ERROR_CODES.items()
    assert MLFLOW_ERROR_CODES[503] == "TEMPORARILY_UNAVAILABLE"


def _is_one_shape(status: int, raw: str | bytes) -> None:
    body = json.loads(raw)
    assert set(body) == SHAPE, body
    assert body["error_code"] == mlflow_error_code(status), (status, body)


def _mapper_status(mapper: dict[str, Any]) -> int:
    """The status a local-reply mapper matches (alone, or inside an ``and_filter``)."""
    found = mapper["filter"]
    for candidate in [found, *found.get("and_filter", {}).get("filters", [])]:
        if "status_code_filter" in candidate:
            return int(candidate["status_code_filter"]["comparison"]["value"]["default_value"])
    raise AssertionError(f"no status filter in {mapper['filter']}")


def test_envoy_s_own_replies_have_the_one_shape() -> None:
    options = envoy_config.EnvoyOptions()
    for mapper in envoy_config.local_reply_config(options)["mappers"]:
        _is_one_shape(_mapper_status(mapper), mapper["body"]["inline_string"])
    _is_one_shape(404, envoy_config.not_found_body(options))


def test_nginx_s_own_replies_have_the_one_shape() -> None:
    for status, body in nginx_config.denial_bodies(nginx_config.NginxOptions()).items():
        _is_one_shape(status, body)


@pytest.mark.parametrize("status", [400, 404, 409, 422, 500, 503])
def test_the_keys_api_s_errors_have_the_one_shape(status: int) -> None:
    response = error_response(status, "some_error", "one line", DOCS)
    assert response.status_code == status and response.media_type == "application/json"
    _is_one_shape(status, bytes(response.body))
    assert json.loads(bytes(response.body))["docs"] == DOCS + "#some-error"
