"""The HTTP transport of the check: Envoy's ext_authz ``http_service`` and NGINX ``auth_request``.

A raw ``asyncio.Protocol`` with the ``httptools`` parser: no framework on this path (measured: a
framework costs several times the whole check). It runs the same ``Checker`` as the gRPC
transport and answers:

* allow — ``200`` with the identity headers, the per-key limits (Envoy turns them into dynamic
  metadata via ``dynamic_metadata_from_headers``) and ``x-envoy-auth-headers-to-remove``;
* deny — the reason's status, the one JSON body, ``WWW-Authenticate``; with a key id, that id and
  the reason as headers Envoy turns into dynamic metadata for its access logs; a browser's refused
  page load — 302 to the sign-in page (Envoy passes ``location`` on);
* ``GET /health`` — 200 while serving, 503 while starting or draining.

Envoy sends the original method and ``/check`` + the original path and query. NGINX's
``auth_request`` sends the original URI and method in ``X-Original-URI``/``X-Original-Method``
(set by our NGINX config, which a client cannot override); those headers are used only when the
request path is not under ``/check``; browser sessions are Envoy's only (NGINX gets keys).
Requests have bounded header sizes and an idle time-out.
A body is read only when Envoy sends one (the GraphQL route, ``with_request_body``), up to
``MAX_BODY_BYTES``; the browser headers (cookie, Origin, ``Sec-Fetch-*``) are read into a
``BrowserSignals`` only when the request carries no key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httptools

from authz.check.checker import Checker, new_check_input
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
from authz.sessions.browser import HEADERS as BROWSER_HEADERS
from authz.sessions.browser import BrowserSignals
from authz.telemetry import metrics
from authz.transports import wire
from authz.transports.ratelimit_headers import http_with_headers
from authz.transports.responses import (
    Answers,
    EncodedResponses,
    denial_metadata,
    identity_headers,
    metadata_values,
)

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024  # Envoy sends at most this much (the GraphQL route's max_request_bytes)
IDLE_TIMEOUT = 30.0
# Idle connections are found by a periodic sweep, not a timer per request: re-arming a timer
# (call_later + cancel) cost ~1 µs of every check. A connection is closed after two sweeps with
# no data and nothing pending, i.e. after IDLE_TIMEOUT to 1.5 × IDLE_TIMEOUT of silence.
SWEEP_INTERVAL = IDLE_TIMEOUT / 2
IDLE_SWEEPS = 2
_WATCHED = {
    b"authorization": "authorization",
    b"x-api-key": "x-api-key",
    b"x-forwarded-for": "x-forwarded-for",
    b"x-original-uri": "x-original-uri",
    b"x-original-method": "x-original-method",
    b"traceparent": "traceparent",
    b"tracestate": "tracestate",  # Check spans (metrics.py)
    b"host": "host",
    b"content-type": "content-type",
    **{name.encode(): name for name in BROWSER_HEADERS},
}
_CHECK_PREFIX = wire.HTTP_CHECK_PATH_PREFIX.encode()
_REASONS = {
    200: b"OK",
    302: b"Found",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
    400: b"Bad Request",
}


def _response(status: int, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Unknown"))]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in headers]
    lines.append(b"content-length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def denial_response(reason: Reason, docs_base: str) -> bytes:
    body = denial_body(reason, docs_base)
    return _response(OUTCOMES[reason].status, denial_headers(reason), body)


def redirect_response(location: str) -> bytes:
    return _response(SIGNIN_REDIRECT_STATUS, signin_redirect_headers(location))


def with_key(response: bytes, reason: Reason, key_id: str) -> bytes:
    """A denial with the key id and reason as headers before the blank line: Envoy files them
    as dynamic metadata (``dynamic_metadata_from_headers``) for its access logs and never sends
    them to the client (they are not in ``allowed_client_headers``)."""
    end = response.index(b"\r\n\r\n") + 2
    extra = "".join(f"{k}: {v}\r\n" for k, v in denial_metadata(reason, key_id).items())
    return response[:end] + extra.encode("latin-1") + response[end:]


def allowance_response(record: KeyRecord) -> bytes:
    headers = identity_headers(record)
    headers += [
        (k, v) for k, v in metadata_values(record).items() if k not in {name for name, _ in headers}
    ]
    headers.append((wire.HEADERS_TO_REMOVE_HEADER, ",".join(wire.CREDENTIAL_HEADERS)))
    return _response(200, headers)


class HttpResponses(EncodedResponses):
    """Encoded HTTP responses (see ``authz.responses``), and the fixed ones of this server."""

    def __init__(self, docs_base: str) -> None:
        super().__init__(
            lambda reason: denial_response(reason, docs_base),
            allowance_response,
            http_with_headers,
            with_key,
            redirect_response,
        )
        self.health_ok = _response(
            200, [("content-type", "application/json")], b'{"status":"serving"}'
        )
        self.health_down = _response(
            503, [("content-type", "application/json")], b'{"status":"not_serving"}'
        )
        self.too_large = _response(431, [("connection", "close")])
        self.bad_request = _response(400, [("connection", "close")])


class CheckProtocol(asyncio.Protocol):
    """One connection; requests are answered in order (HTTP/1.1 pipelining safe)."""

    def __init__(self, server: HttpCheckServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._repeated = False
        self._header_bytes = 0
        self._body: bytearray | None = None
        self._queue: list[asyncio.Future[bytes] | bytes] = []
        self.idle_sweeps = 0  # sweeps since data last arrived (HttpCheckServer.sweep)

    # asyncio callbacks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self.idle_sweeps = 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(self._server.responses.bad_request)
        except httptools.HttpParserError:
            self._fail(self._server.responses.bad_request)

    # httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url, self._headers, self._repeated, self._header_bytes = b"", {}, False, 0
        self._body = None

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._fail(self._server.responses.too_large)
            return
        key = _WATCHED.get(name.lower())
        if key is None:
            return
        if key in self._headers:
            if key in ("authorization", "x-api-key"):
                self._repeated = True
            elif key == "cookie":  # repeated Cookie headers are one list of cookies
                self._headers[key] += "; " + value.decode("latin-1")
                return
        self._headers[key] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        if self._body is None:
            self._body = bytearray()
        if len(self._body) + len(body) > MAX_BODY_BYTES:
            self._fail(self._server.responses.bad_request)
            return
        self._body += body

    def on_message_complete(self) -> None:
        method = self._parser.get_method().decode("ascii", "replace")
        result = self._server.handle(method, self._url, self._headers, self._repeated, self._body)
        if not self._queue and type(result) is bytes:  # answered now, nothing before it
            if self._transport is not None:
                self._transport.write(result)
            return
        self._queue.append(result)
        self._drain()
        if isinstance(result, asyncio.Future):
            result.add_done_callback(lambda _f: self._drain())

    # helpers -----------------------------------------------------------------------------
    def _drain(self) -> None:
        while self._queue:
            head = self._queue[0]
            if isinstance(head, asyncio.Future):
                if not head.done():
                    return
                head = head.result()
            self._queue.pop(0)
            if self._transport is not None:
                self._transport.write(head)

    def _fail(self, response: bytes) -> None:
        if self._transport is not None:
            self._transport.write(response)
            self._transport.close()

    def swept(self) -> None:
        """One idle sweep passed: close the connection once it has been silent long enough."""
        self.idle_sweeps += 1
        if self.idle_sweeps >= IDLE_SWEEPS and self._transport is not None and not self._queue:
            self._transport.close()


class HttpCheckServer:
    def __init__(
        self,
        checker: Checker,
        trusted_hops: int,
        docs_base: str,
        serving: Callable[[], bool],
    ) -> None:
        self.checker = checker
        self.responses = HttpResponses(docs_base)
        self._answers = Answers(checker, self.responses, "http")
        self._trusted_hops = trusted_hops
        self._serving = serving
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connections: set[CheckProtocol] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def handle(
        self,
        method: str,
        url: bytes,
        headers: dict[str, str],
        repeated: bool,
        body: bytearray | None = None,
    ) -> bytes | asyncio.Future[bytes]:
        started = metrics.now()
        envoy = url.startswith(_CHECK_PREFIX)
        if envoy:
            path = url[len(_CHECK_PREFIX) :].decode("latin-1") or "/"
        elif url == wire.HEALTH_PATH.encode():
            return self.responses.health_ok if self._serving() else self.responses.health_down
        else:  # NGINX auth_request: the original request is described by our headers
            path = headers.get("x-original-uri", "/")
            method = headers.get("x-original-method", method)
        authorization, api_key = headers.get("authorization"), headers.get("x-api-key")
        # Browser sessions need Envoy (the sign-in redirect, the GraphQL body, the cookie removed
        # upstream): NGINX's auth_request knows only 2xx/401/403, so it gets keys only.
        browsing = envoy and authorization is None and api_key is None
        # CheckInput(method, path, sources, client_address, any_scope, browser, body) and
        # CredentialSources(authorization, api_key_header, query, repeated), built in C.
        request = new_check_input(
            (
                method,
                path,
                new_sources((authorization, api_key, path.partition("?")[2], repeated)),
                client_address(headers.get("x-forwarded-for"), "", self._trusted_hops),
                False,
                BrowserSignals.read(headers.get, headers.get("host")) if browsing else None,
                None
                if body is None or not path.startswith(GRAPHQL_PATH)
                else RequestBody(headers.get("content-type"), bytes(body)),
            )
        )
        answer = self._answers.now(request, started, headers)
        if answer is not None:
            return answer
        task = asyncio.get_running_loop().create_task(
            self._answers.later(request, started, headers)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: CheckProtocol(self), host, port, reuse_address=True, backlog=1024
        )
        self._sweeper = loop.create_task(self._sweep_loop())
        return int(self._server.sockets[0].getsockname()[1])

    def sweep(self) -> None:
        for connection in list(self.connections):
            connection.swept()

    async def _sweep_loop(self, interval: float = SWEEP_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
