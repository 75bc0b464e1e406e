"""Envoy's ext_authz gRPC protocol ↔ the check pipeline. Protobuf types stop in this module.

Responses are serialised bytes, built once and reused: a denial depends only on its reason, an
allowance only on the key record (id and version), so the hot path re-encodes nothing.
"""

from __future__ import annotations

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import (
    CheckRequest,
    CheckResponse,
    DeniedHttpResponse,
    OkHttpResponse,
)
from envoy.type.v3.http_status_pb2 import HttpStatus
from google.protobuf.struct_pb2 import Struct
from google.rpc import code_pb2, status_pb2

from authz.check.checker import CheckInput, new_check_input
from authz.check.credentials import new_sources
from authz.check.graphql import RequestBody
from authz.check.network import client_address
from authz.check.reasons import (
    OUTCOMES,
    SIGNIN_REDIRECT_STATUS,
    Reason,
    denial_body,
    denial_headers,
    signin_redirect_headers,
)
from authz.check.routes import GRAPHQL_PATH
from authz.keys.record import KeyRecord
from authz.sessions.browser import BrowserSignals
from authz.transports import wire
from authz.transports.ratelimit_headers import grpc_tail
from authz.transports.responses import (
    EncodedResponses,
    denial_metadata,
    identity_headers,
    metadata_values,
)

_OVERWRITE = HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_RPC_CODES = {
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    429: code_pb2.RESOURCE_EXHAUSTED,
    503: code_pb2.UNAVAILABLE,
}


def to_input(request: CheckRequest, trusted_hops: int) -> CheckInput:
    # Every protobuf field read builds a Python object: each is read once, and the TCP peer
    # (four nested messages) only when there is no X-Forwarded-For, the only case it is used.
    # The browser headers and the body are read only when they can matter: no key was sent /
    # the GraphQL route (Envoy sends the body there; Envoy 1.40 honours the route's
    # with_request_body but not its pack_as_bytes, so the body arrives as the string ``body``).
    http = request.attributes.request.http
    headers = http.headers
    path = http.path
    forwarded = headers.get("x-forwarded-for")
    peer = "" if forwarded else request.attributes.source.address.socket_address.address
    authorization = headers.get(wire.AUTHORIZATION_HEADER)
    api_key = headers.get(wire.API_KEY_HEADER)
    # CheckInput(method, path, sources, client_address, any_scope, browser, body) and
    # CredentialSources(authorization, api_key_header, query, repeated), built in C.
    return new_check_input(
        (
            http.method,
            path,
            new_sources((authorization, api_key, http.query or path.partition("?")[2], False)),
            client_address(forwarded, peer, trusted_hops),
            False,
            None
            if authorization is not None or api_key is not None
            else BrowserSignals.read(headers.get, http.host),
            RequestBody(headers.get("content-type"), http.raw_body or http.body.encode())
            if path.startswith(GRAPHQL_PATH)
            else None,
        )
    )


def _header(name: str, value: str) -> HeaderValueOption:
    return HeaderValueOption(header=HeaderValue(key=name, value=value), append_action=_OVERWRITE)


def denial_bytes(reason: Reason, docs_base: str) -> bytes:
    outcome = OUTCOMES[reason]
    response = CheckResponse(
        status=status_pb2.Status(code=_RPC_CODES.get(outcome.status, code_pb2.UNAUTHENTICATED)),
        denied_response=DeniedHttpResponse(
            status=HttpStatus(code=outcome.status),  # type: ignore[arg-type]
            headers=[_header(k, v) for k, v in denial_headers(reason)],
            body=denial_body(reason, docs_base).decode(),
        ),
    )
    encoded: bytes = response.SerializeToString()
    return encoded


def redirect_bytes(location: str) -> bytes:
    response = CheckResponse(
        status=status_pb2.Status(code=code_pb2.UNAUTHENTICATED),
        denied_response=DeniedHttpResponse(
            status=HttpStatus(code=SIGNIN_REDIRECT_STATUS),  # type: ignore[arg-type]
            headers=[_header(k, v) for k, v in signin_redirect_headers(location)],
        ),
    )
    encoded: bytes = response.SerializeToString()
    return encoded


def allowance_bytes(record: KeyRecord) -> bytes:
    metadata = Struct()
    metadata.update(metadata_values(record))
    response = CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK),
        ok_response=OkHttpResponse(
            headers=[_header(k, v) for k, v in identity_headers(record)],
            headers_to_remove=list(wire.CREDENTIAL_HEADERS),
            query_parameters_to_remove=[wire.API_KEY_QUERY_PARAM],
        ),
        dynamic_metadata=metadata,
    )
    encoded: bytes = response.SerializeToString()
    return encoded


def with_key(encoded: bytes, reason: Reason, key_id: str) -> bytes:
    """A cached denial followed by a CheckResponse holding only ``dynamic_metadata`` (protobuf
    merges concatenated messages): Envoy files the key id and reason for its access logs."""
    metadata = Struct()
    metadata.update(denial_metadata(reason, key_id))
    tail: bytes = CheckResponse(dynamic_metadata=metadata).SerializeToString()
    return encoded + tail


class ResponseCache(EncodedResponses):
    """Serialised CheckResponses (see ``authz.responses``)."""

    def __init__(self, docs_base: str) -> None:
        super().__init__(
            lambda reason: denial_bytes(reason, docs_base),
            allowance_bytes,
            lambda encoded, limit: encoded + grpc_tail(limit),
            with_key,
            redirect_bytes,
        )
