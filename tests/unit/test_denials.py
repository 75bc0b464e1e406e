"""Every place that answers for a refused key answers alike: the reason table's status, body and
headers (``authz.check.reasons.denial_headers``) — gRPC, HTTP, the keys REST API, and the NGINX
and Envoy configuration for authz's own 503."""

from __future__ import annotations

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from authz.api.auth import denial_response as api_denial
from authz.check.reasons import OUTCOMES, Reason, denial_body, denial_headers
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
