"""The generated Envoy configuration against the real Envoy binary.

1. ``envoy --mode validate`` accepts every variant (both transports, with and without TLS, rate
   limit, access logs, every benchmark variant).
2. One live smoke test: Envoy (plain HTTP, HTTP ext_authz) in front of a recording upstream and a
   tiny fake HTTP check server, both written here. The fake authz is fine at this tier: the unit
   under test is Envoy's configuration, not the Check pipeline.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from authz.transports import wire
from bench import envoy as bench_envoy
from cli import envoy_config as ec_

pytestmark = pytest.mark.integration

ENVOY = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "envoy"
GOOD_TOKEN = "hk_test_GOODTOKENsecretpart0001"
QUERY_SECRET = "QUERYSECRETvalue42"
AUTHZ_KEY_ID = "kid_from_authz"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "tls.crt", folder / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def _variants(cert: str, key: str) -> dict[str, dict[str, object]]:
    tls = ec_.EnvoyOptions(tls_cert_path=cert, tls_key_path=key)
    plain = replace(tls, tls_cert_path=None, tls_key_path=None)
    upstream = ec_.Endpoint("127.0.0.1", 18080)
    authz = ec_.Endpoint("127.0.0.1", 19191)
    result = {
        "grpc_tls": ec_.render(tls),
        "http_tls": ec_.render(replace(tls, transport="http")),
        "grpc_plain": ec_.render(plain),
        "http_plain": ec_.render(replace(plain, transport="http")),
        "tls_no_redirect_listener": ec_.render(replace(tls, http_port=0)),
        "ratelimit_deny_no_als_no_shield": ec_.render(
            replace(
                tls,
                rate_limit=ec_.RateLimitOptions(enabled=True, failure_mode_deny=True),
                access_log_grpc=False,
                local_rate_limit=None,
            )
        ),
        "http_no_ratelimit_no_als_no_keys_api": ec_.render(
            replace(
                tls,
                transport="http",
                rate_limit=ec_.RateLimitOptions(enabled=False),
                access_log_grpc=False,
                keys_api=None,
                trusted_hops=2,
            )
        ),
        "dns_upstreams_and_extras": ec_.render(
            replace(
                plain,
                mlflow=ec_.Endpoint("localhost", 5000),
                public_https_port=8443,
                extra_clusters=(ec_.Cluster("echo", upstream),),
                extra_routes=(ec_.Route("/echo/", "echo", prefix_rewrite="/"),),
            )
        ),
    }
    for variant in bench_envoy.BENCH_VARIANTS:
        result[f"bench_{variant}"] = bench_envoy.render_bench(
            variant,
            port=18081,
            admin_port=18082,
            upstream=upstream,
            authz=authz,
            api_keys=("k1", "k2"),
        )
    return result


VARIANT_NAMES = [
    "grpc_tls",
    "http_tls",
    "grpc_plain",
    "http_plain",
    "tls_no_redirect_listener",
    "ratelimit_deny_no_als_no_shield",
    "http_no_ratelimit_no_als_no_keys_api",
    "dns_upstreams_and_extras",
    *(f"bench_{v}" for v in bench_envoy.BENCH_VARIANTS),
]


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_envoy_accepts_variant(name: str, tls_files: tuple[str, str], tmp_path: Path) -> None:
    config = _variants(*tls_files)[name]
    path = ec_.write(config, tmp_path / f"{name}.yaml")
    result = subprocess.run(
        [
            str(ENVOY),
            "--mode",
            "validate",
            "-c",
            str(path),
            "--use-dynamic-base-id",
            "-l",
            "warning",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deprecated" not in (result.stdout + result.stderr).lower()


# --- live smoke test -------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    target: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        return values[0] if values else None

    def names(self) -> set[str]:
        return {k for k, _ in self.headers}


Reply = tuple[int, list[tuple[str, str]], bytes]


@dataclass
class RecordingServer:
    """A minimal HTTP/1.1 server on its own event loop thread that records every request."""

    handler: Callable[[Request], Reply]
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def start(self) -> RecordingServer:
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        future.result(timeout=10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            for _ in range(10_000):  # bounded keep-alive loop
                head = await reader.readuntil(b"\r\n\r\n")
                request = self._parse(head.decode("latin-1"))
                length = int(request.header("content-length") or 0)
                if length:
                    await reader.readexactly(length)
                self.requests.append(request)
                status, headers, body = self.handler(request)
                lines = [f"HTTP/1.1 {status} X", f"content-length: {len(body)}"]
                lines += [f"{k}: {v}" for k, v in headers]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    def _parse(head: str) -> Request:
        first, *rest = [line for line in head.split("\r\n") if line]
        method, target, _ = first.split(" ", 2)
        headers = [(k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in rest)]
        return Request(method, target, headers)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)


def upstream_handler(request: Request) -> Reply:
    return 200, [("content-type", "application/json")], b'{"upstream": true}'


def authz_handler(request: Request) -> Reply:
    if request.target == wire.HEALTH_PATH:
        return 200, [("content-type", "application/json")], b'{"status": "serving"}'
    if request.header(wire.AUTHORIZATION_HEADER) == f"Bearer {GOOD_TOKEN}":
        return (
            200,
            [
                (wire.KEY_ID_HEADER, AUTHZ_KEY_ID),
                (wire.USER_ID_HEADER, "user_1"),
                (wire.HEADERS_TO_REMOVE_HEADER, "x-scrub-me"),
                ("x-not-allowed", "must-not-reach-upstream"),
            ],
            b"",
        )
    body = b'{"error": "unknown_key", "message": "The API key is not valid.", "docs": "/docs"}'
    return (
        401,
        [("www-authenticate", 'Bearer realm="hokusai"'), ("content-type", "application/json")],
        body,
    )


@dataclass
class Stack:
    base: str
    upstream: RecordingServer
    authz: RecordingServer
    log_path: Path


def _wait_ready(admin_port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "envoy exited during start-up"
        try:
            if httpx.get(f"http://127.0.0.1:{admin_port}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError("envoy not ready within 30 s")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    upstream = RecordingServer(upstream_handler).start()
    authz = RecordingServer(authz_handler).start()
    port, admin_port = free_port(), free_port()
    here = ec_.Endpoint("127.0.0.1", upstream.port)
    options = ec_.EnvoyOptions(
        listen_address="127.0.0.1",
        http_port=port,
        admin_port=admin_port,
        tls_cert_path=None,
        tls_key_path=None,
        transport="http",
        authz_http=ec_.Endpoint("127.0.0.1", authz.port),
        mlflow=here,
        keys_api=here,
        rate_limit=ec_.RateLimitOptions(enabled=False),
        access_log_grpc=False,
        access_log_stdout="all",  # step 7 reads an admitted request's line
        extra_clusters=(ec_.Cluster("echo", here),),
        extra_routes=(ec_.Route("/echo/", "echo", prefix_rewrite="/"),),
    )
    folder = tmp_path_factory.mktemp("envoy")
    config = ec_.write(options, folder / "envoy.yaml")
    log_path = folder / "stdout.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(ENVOY),
                "-c",
                str(config),
                "--use-dynamic-base-id",
                "--concurrency",
                "1",
                "-l",
                "warning",
                "--file-flush-interval-msec",
                "100",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(admin_port, process)
        yield Stack(f"http://127.0.0.1:{port}", upstream, authz, log_path)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
        upstream.stop()
        authz.stop()


def _only_new(server: RecordingServer, before: int) -> list[Request]:
    return server.requests[before:]


def _get(stack: Stack, target: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(stack.base + target, headers=headers, timeout=10)


def _log_text(stack: Stack, must_contain: str) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        text = stack.log_path.read_text(encoding="utf-8", errors="replace")
        if must_contain in text:
            return text
        time.sleep(0.1)
    raise TimeoutError(f"{must_contain!r} never reached the access log")


def test_live_gateway_http_mode(stack: Stack) -> None:
    good = {
        "authorization": f"Bearer {GOOD_TOKEN}",
        wire.KEY_ID_HEADER: "forged",
        wire.SCOPES_HEADER: "admin",
        "x-scrub-me": "1",
        "x-api-key": GOOD_TOKEN,
        "x-forwarded-for": "203.0.113.9",
    }

    # 1. Allowed: the upstream sees authz's key id only, and no credential anywhere.
    seen_up, seen_authz = len(stack.upstream.requests), len(stack.authz.requests)
    response = _get(stack, f"/echo/x?{wire.API_KEY_QUERY_PARAM}={QUERY_SECRET}&keep=1", good)
    assert response.status_code == 200
    (upstream_request,) = _only_new(stack.upstream, seen_up)
    assert upstream_request.target == "/x?keep=1"
    assert upstream_request.header(wire.KEY_ID_HEADER) == AUTHZ_KEY_ID
    assert upstream_request.header(wire.USER_ID_HEADER) == "user_1"
    assert wire.SCOPES_HEADER not in upstream_request.names()  # client-sent, authz did not set it
    for name in (*wire.CREDENTIAL_HEADERS, "x-scrub-me", "x-not-allowed"):
        assert name not in upstream_request.names()
    assert not any(GOOD_TOKEN in v or QUERY_SECRET in v for _, v in upstream_request.headers)
    # authz saw the query (it must read api_key) and the client address Envoy appended.
    (check,) = _only_new(stack.authz, seen_authz)
    assert check.target.startswith(wire.HTTP_CHECK_PATH_PREFIX + "/echo/x?")
    assert QUERY_SECRET in check.target
    # Envoy appended one entry (the peer; for a loopback peer Envoy writes its own address), so
    # with 0 trusted hops the forged left entry is never the right-most one authz uses.
    xff = [entry.strip() for entry in (check.header("x-forwarded-for") or "").split(",")]
    assert len(xff) == 2
    assert xff[0] == "203.0.113.9"
    assert xff[-1] != "203.0.113.9"
    assert "forged" not in (check.header(wire.KEY_ID_HEADER) or "")

    # 2. Denied: authz's 401 and body reach the client; nothing reaches the upstream.
    seen_up = len(stack.upstream.requests)
    denied = _get(
        stack,
        "/api/mlflow/api/2.0/mlflow/experiments/search",
        {"authorization": "Bearer hk_test_wrong", wire.KEY_ID_HEADER: "forged"},
    )
    assert denied.status_code == 401
    assert denied.json()["error"] == "unknown_key"
    assert denied.headers["www-authenticate"].startswith("Bearer")
    assert _only_new(stack.upstream, seen_up) == []

    # 3. MLflow prefix: rewritten to /, Host made local for MLflow's security middleware.
    seen_up = len(stack.upstream.requests)
    assert (
        _get(stack, "/api/mlflow/api/2.0/mlflow/experiments/search?max_results=1", good).status_code
        == 200
    )
    (mlflow_request,) = _only_new(stack.upstream, seen_up)
    assert mlflow_request.target == "/api/2.0/mlflow/experiments/search?max_results=1"
    assert mlflow_request.header("host") == "localhost"

    # 4. Health routes skip ext_authz but still strip x-hokusai-* and credentials.
    seen_up, seen_authz = len(stack.upstream.requests), len(stack.authz.requests)
    forged = {wire.KEY_ID_HEADER: "forged", wire.USER_ID_HEADER: "forged"}
    assert _get(stack, wire.MLFLOW_HEALTH_PATH, forged).status_code == 200
    assert _get(stack, wire.HEALTH_PATH, forged).status_code == 200
    (mlflow_health,) = _only_new(stack.upstream, seen_up)
    (authz_health,) = _only_new(stack.authz, seen_authz)  # the health call itself, no Check
    assert mlflow_health.target == "/health"
    assert authz_health.target == wire.HEALTH_PATH
    for request in (mlflow_health, authz_health):
        assert not any(name.startswith(wire.HEADER_PREFIX) for name in request.names())

    # 5. Keys API: no ext_authz, keeps Authorization (the REST API checks it), drops x-hokusai-*.
    seen_up = len(stack.upstream.requests)
    keys_headers = {"authorization": "Bearer hk_test_whatever", wire.KEY_ID_HEADER: "forged"}
    assert _get(stack, wire.KEYS_API_PREFIX + "keys", keys_headers).status_code == 200
    (keys_request,) = _only_new(stack.upstream, seen_up)
    assert keys_request.header("authorization") == "Bearer hk_test_whatever"
    assert wire.KEY_ID_HEADER not in keys_request.names()

    # 6. Unknown path: the JSON 404.
    missing = _get(stack, "/nope", good)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"
    assert missing.json()["error"] == "not_found"

    # 7. The access log has the path, never the query string or a credential.
    text = _log_text(stack, '"/nope"')
    assert "/echo/x" in text
    assert QUERY_SECRET not in text
    assert GOOD_TOKEN not in text
    assert json.loads(text.strip().splitlines()[-1])["status"] in (404, "404")

    # 8. authz down: exactly 503, never a pass.
    stack.authz.stop()
    seen_up = len(stack.upstream.requests)
    for _ in range(3):  # a fresh connection and reused ones alike
        assert _get(stack, "/echo/x", good).status_code == 503
    assert _only_new(stack.upstream, seen_up) == []
