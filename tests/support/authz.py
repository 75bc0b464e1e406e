"""Run a real AuthzServer in a background thread, and talk to it as Envoy and NGINX do."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from envoy.config.core.v3.address_pb2 import Address, SocketAddress
from envoy.service.auth.v3 import attribute_context_pb2 as ac
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from authz.server import AuthzServer, Ports
from authz.settings import Settings

T = TypeVar("T")


@dataclass
class RunningAuthz:
    server: AuthzServer
    ports: Ports
    loop: asyncio.AbstractEventLoop

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run a coroutine factory on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(30)


@contextmanager
def running_authz(settings: Settings) -> Iterator[RunningAuthz]:
    settings = settings.replace(grpc_port=0, http_check_port=0)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[AuthzServer, Ports]:
        server = AuthzServer(settings)
        return server, await server.start()

    server, ports = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield RunningAuthz(server, ports, loop)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(0.5), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def check_request(
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    peer: str = "127.0.0.1",
    body: bytes = b"",
) -> CheckRequest:
    """A CheckRequest as Envoy builds it: repeated headers are joined with commas, the Host is
    the ``host`` field (``:authority``), a body (``with_request_body``) is the string ``body``."""
    merged: dict[str, str] = {}
    for name, value in headers:
        if name != "host":
            merged[name] = f"{merged[name]},{value}" if name in merged else value
    http = ac.AttributeContext.HttpRequest(
        method=method,
        path=path,
        headers=merged,
        query=path.partition("?")[2],
        host=dict(headers).get("host", ""),
        body=body.decode(),
    )
    return CheckRequest(
        attributes=ac.AttributeContext(
            source=ac.AttributeContext.Peer(
                address=Address(socket_address=SocketAddress(address=peer, port_value=40000))
            ),
            request=ac.AttributeContext.Request(http=http),
        )
    )


class GrpcCheckClient:
    def __init__(self, port: int) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self._check = self.channel.unary_unary(
            "/envoy.service.auth.v3.Authorization/Check",
            request_serializer=CheckRequest.SerializeToString,
            response_deserializer=CheckResponse.FromString,
        )

    def check(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        peer: str = "127.0.0.1",
        body: bytes = b"",
    ) -> CheckResponse:
        response: CheckResponse = self._check(
            check_request(method, path, headers, peer, body), timeout=10
        )
        return response

    def close(self) -> None:
        self.channel.close()


@dataclass
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


def http_check(
    port: int,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    prefix: str = "/check",
    body: bytes = b"",
) -> HttpAnswer:
    """One raw HTTP/1.1 request, as Envoy's http_service sends it (original method and path,
    the original Host, and the body on the GraphQL route)."""
    host = [v for k, v in headers if k == "host"] or ["authz"]
    lines = [
        f"{method} {prefix}{path} HTTP/1.1",
        f"host: {host[0]}",
        f"content-length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in headers if k != "host"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        return read_response(sock)


def read_response(sock: socket.socket) -> HttpAnswer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in header_lines)]
    length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return HttpAnswer(int(status_line.split()[1]), headers, body)


def poll(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> float:
    """Poll until ``condition()``; return the seconds it took, or raise after ``timeout``."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
