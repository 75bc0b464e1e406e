"""End-to-end fixtures: the real local stack (Envoy + authz + MLflow + Postgres + Redis).

``gateway`` (session, parametrised over the two ext_authz transports, ``grpc`` and ``http``): a
``cli.stack.LocalStack`` with TLS from its private CA, sharing one database, one Redis and one
MLflow, so the two gateways are two authz instances behind two Envoys over one key store. It has
two extra authenticated routes to a recording upstream, to prove what upstreams receive: ``/echo/``
and ``UI_ECHO_PREFIX``, under MLflow's UI routes (where a browser session is a credential).

``gateways`` (session): both at once, for cross-instance checks (revocation).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from authz.keys import format as keys
from authz.management.service import KeyService
from authz.settings import Settings
from authz.storage.db import connector
from cli import envoy_config
from cli.servers import MlflowServer, free_port
from cli.stack import LocalStack, StackOptions, StackRecord

TRANSPORTS = ("grpc", "http")
ECHO_PREFIX = "/echo/"
UI_ECHO_PREFIX = "/api/mlflow/ajax-api/2.0/hokusai-echo/"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class RecordingUpstream:
    """An HTTP upstream that answers 200 and remembers every request it received."""

    requests: list[Recorded] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> int:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                recorder.requests.append(
                    Recorded(
                        self.command, self.path, {k.lower(): v for k, v in self.headers.items()}
                    )
                )
                body = json.dumps({"ok": True}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return int(self.server.server_address[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Gateway:
    transport: str
    record: StackRecord
    database_url: str
    echo: RecordingUpstream
    settings: Settings
    data_dir: Path

    @property
    def url(self) -> str:
        return self.record.gateway_url

    @property
    def mlflow_uri(self) -> str:
        return f"{self.url}/api/mlflow"

    @property
    def ca(self) -> str:
        return self.record.ca_cert

    def service(self, actor: str = "test:e2e") -> KeyService:
        return KeyService(connector(self.database_url), self.settings, actor)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, verify=self.ca, timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, verify=self.ca, timeout=10, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.put(self.url + path, verify=self.ca, timeout=10, **kwargs)


GENERATED: list[str] = []  # every key this test process made: the secrets sweep looks for them


@pytest.fixture(scope="session", autouse=True)
def _record_generated_keys() -> Iterator[None]:
    original = keys.generate

    def generate(env: str, key_id: str | None = None) -> keys.NewKey:
        new = original(env, key_id)
        GENERATED.append(new.token)
        return new

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keys, "generate", generate)
        yield


@pytest.fixture(scope="session")
def e2e_database_url(postgres_server_url: str, _template_database: str) -> Iterator[str]:
    import psycopg
    from psycopg import sql

    from tests.conftest import with_database

    name = "e2e_stack"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(_template_database)
            )
        )
    yield with_database(postgres_server_url, name)


@pytest.fixture(scope="session")
def e2e_redis_url(redis_server: Any) -> str:
    from authz.settings import external_test_stores

    external = external_test_stores().redis_url
    return external or str(redis_server.url)


def _start_gateway(
    transport: str, tmp: Path, database_url: str, redis_url: str, mlflow: MlflowServer
) -> tuple[LocalStack, Gateway]:
    settings = Settings(bcrypt_cost=4, database_url=database_url, redis_url=redis_url)
    echo = RecordingUpstream()
    echo_port = echo.start()
    options = StackOptions(
        data_dir=tmp / f"stack-{transport}",
        https_port=free_port(),
        http_port=free_port(),
        mlflow_url=mlflow.url,
        transport=transport,
        extra_authz_env={
            "HOKUSAI_NEGATIVE_CACHE_TTL": "0.2",
            # usage rows within a second, for docs/getting-started.md
            "HOKUSAI_USAGE_FLUSH_INTERVAL": "0.5",
            # every browser test signs in from 127.0.0.1: the limit is tested with its own bucket
            "HOKUSAI_SIGNIN_RATE_LIMIT": "600/min",
            "HOKUSAI_SIGNIN_BURST": "30",
            # authentication events within a second (tests/e2e/test_admin_e2e.py)
            "HOKUSAI_EVENTS_FLUSH_INTERVAL": "0.2",
        },
        envoy_overrides={
            "extra_routes": (
                envoy_config.Route(ECHO_PREFIX, "echo"),
                envoy_config.Route(UI_ECHO_PREFIX, "echo"),
            ),
            "extra_clusters": (
                envoy_config.Cluster("echo", envoy_config.Endpoint("127.0.0.1", echo_port)),
            ),
        },
    )
    stack = LocalStack(options, settings)
    record = stack.start()
    return stack, Gateway(transport, record, database_url, echo, settings, stack.data_dir)


@pytest.fixture(scope="session")
def gateways(
    tmp_path_factory: pytest.TempPathFactory,
    e2e_database_url: str,
    e2e_redis_url: str,
    mlflow_server: MlflowServer,
) -> Iterator[dict[str, Gateway]]:
    tmp = tmp_path_factory.mktemp("e2e")
    started: list[tuple[LocalStack, Gateway]] = []
    try:
        for transport in TRANSPORTS:
            started.append(
                _start_gateway(transport, tmp, e2e_database_url, e2e_redis_url, mlflow_server)
            )
        yield {gateway.transport: gateway for _stack, gateway in started}
    finally:
        for stack, gateway in reversed(started):
            stack.stop()
            gateway.echo.stop()


@pytest.fixture(params=TRANSPORTS)
def gateway(request: pytest.FixtureRequest, gateways: dict[str, Gateway]) -> Gateway:
    return gateways[request.param]


# --- the MLflow UI tests (tests/e2e/test_ui_*.py) -------------------------------------------


@pytest.fixture(scope="session")
def ui_keys(gateways: dict[str, Gateway]) -> Any:
    from tests.e2e.ui import UiKeys

    service = gateways["http"].service("test:ui")
    writer_email, reader_email = "ui-writer@example.com", "ui-reader@example.com"
    _, writer = service.create_key(
        user_email=writer_email, name="ui-write", scopes=["mlflow:read", "mlflow:write"]
    )
    _, reader = service.create_key(user_email=reader_email, name="ui-read", scopes=["mlflow:read"])
    return UiKeys(writer.token, reader.token, writer_email, reader_email)


@pytest.fixture(scope="session")
def ui_seed(gateways: dict[str, Gateway], ui_keys: Any) -> Any:
    """The UI tests' experiment, runs, model and trace (logged once per session)."""
    from tests.e2e.ui import seed

    return seed(gateways["http"], ui_keys.writer)
