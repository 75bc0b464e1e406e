"""NGINX (Debian's package) in front of a real MLflow, authorising through authz's HTTP check with
``auth_request``: the config rendered by cli/nginx_config.py, the standard MLflow client, TLS."""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from authz.management.service import KeyService
from authz.settings import Settings
from authz.storage.db import connector
from authz.transports import wire
from cli import nginx_config
from cli.envoy_config import Endpoint
from cli.nginx_config import NginxOptions
from cli.servers import ManagedProcess, MlflowServer, free_port
from cli.tls import Certificates, ensure_certificates
from tests.e2e.conftest import RecordingUpstream
from tests.support.authz import RunningAuthz, poll, running_authz
from tests.support.mlflow import assert_mlflow_client_works

SEARCH = "/api/mlflow/api/2.0/mlflow/experiments/search?max_results=1"
CREATE = "/api/mlflow/api/2.0/mlflow/experiments/create"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "nginx.md"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )
    if found is None:
        pytest.fail("nginx is not installed: run `make nginx` (Debian's nginx package)")
    return found


class NginxServer(ManagedProcess):
    """NGINX with a rendered config; every file it writes is under ``options.runtime_dir``."""

    name = "nginx"
    startup_timeout = 30.0

    def __init__(self, options: NginxOptions, ca: Path) -> None:
        super().__init__(Path(options.runtime_dir))
        self.options, self.ca = options, ca
        self.config_path = Path(options.runtime_dir) / "nginx.conf"

    def prepare(self) -> None:
        nginx_config.write(self.options, self.config_path)

    def command(self) -> list[str]:
        run = self.options.runtime_dir
        return [nginx_binary(), "-p", run, "-c", str(self.config_path), "-e", f"{run}/error.log"]

    def ready(self) -> bool:
        try:
            requests.get(
                f"https://localhost:{self.options.https_port}/nowhere",
                verify=str(self.ca),
                timeout=1,
            )
            return True
        except requests.RequestException:
            return False


@dataclass
class Fronted:
    """One NGINX in front of one upstream, and the CA clients trust."""

    server: NginxServer
    certificates: Certificates

    @property
    def url(self) -> str:
        return f"https://localhost:{self.server.options.https_port}"

    @property
    def ca(self) -> str:
        return str(self.certificates.ca_cert)

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(self.url + path, verify=self.ca, timeout=10, **kwargs)  # type: ignore[arg-type]

    def raw_get(self, target: str) -> requests.Response:
        """GET ``target`` byte for byte (no URL normalisation), as a ``requests.Response``."""
        context = ssl.create_default_context(cafile=self.ca)
        connection = http.client.HTTPSConnection(
            "localhost", self.server.options.https_port, context=context, timeout=10
        )
        try:
            connection.request("GET", target)
            answer = connection.getresponse()
            response = requests.Response()
            response.status_code, response._content = answer.status, answer.read()
            return response
        finally:
            connection.close()

    def post(self, path: str, **kwargs: object) -> requests.Response:
        return requests.post(self.url + path, verify=self.ca, timeout=10, **kwargs)  # type: ignore[arg-type]


@dataclass
class NginxStack:
    authz: RunningAuthz
    settings: Settings
    database_url: str
    mlflow: Fronted
    echo: Fronted
    echo_upstream: RecordingUpstream
    authz_down: Fronted

    def service(self) -> KeyService:
        return KeyService(connector(self.database_url), self.settings, "test:nginx")


def _options(
    tmp: Path, name: str, certificates: Certificates, authz_port: int, upstream: Endpoint
) -> NginxOptions:
    run = tmp / name
    run.mkdir(parents=True, exist_ok=True)
    return NginxOptions(
        listen_address="127.0.0.1",
        https_port=free_port(),
        http_port=free_port(),
        tls_cert_path=str(certificates.server_cert),
        tls_key_path=str(certificates.server_key),
        authz_http=Endpoint("127.0.0.1", authz_port),
        mlflow=upstream,
        runtime_dir=str(run),
        error_log=str(run / "error.log"),
        user="root" if os.geteuid() == 0 else None,
        worker_processes="1",
    )


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    e2e_database_url: str,
    e2e_redis_url: str,
    mlflow_server: MlflowServer,
) -> Iterator[NginxStack]:
    tmp = tmp_path_factory.mktemp("nginx")
    certificates = ensure_certificates(tmp / "tls")
    settings = Settings(
        bcrypt_cost=4,
        database_url=e2e_database_url,
        redis_url=e2e_redis_url,
        negative_cache_ttl=0.2,
    )
    echo = RecordingUpstream()
    echo_port = echo.start()
    mlflow = Endpoint("127.0.0.1", mlflow_server.port)
    with running_authz(settings) as authz:
        servers = [
            NginxServer(_options(tmp, name, certificates, port, upstream), certificates.ca_cert)
            for name, port, upstream in (
                ("mlflow", authz.ports.http, mlflow),
                ("echo", authz.ports.http, Endpoint("127.0.0.1", echo_port)),
                ("down", free_port(), mlflow),  # nothing listens there: authz is down
            )
        ]
        try:
            for server in servers:
                server.start()
            mlflow_front, echo_front, down_front = (Fronted(s, certificates) for s in servers)
            yield NginxStack(
                authz, settings, e2e_database_url, mlflow_front, echo_front, echo, down_front
            )
        finally:
            for server in servers:
                server.stop()
            echo.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_mlflow_client_end_to_end(stack: NginxStack) -> None:
    _, new = stack.service().create_key(
        user_email="ds@example.com", name="nginx-client", scopes=["mlflow:read", "mlflow:write"]
    )
    assert_mlflow_client_works(f"{stack.mlflow.url}/api/mlflow", new.token, stack.mlflow.ca)


def test_no_key_is_401_with_a_challenge(stack: NginxStack) -> None:
    response = stack.mlflow.get(SEARCH)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert set(response.json()) == {"error", "error_code", "message", "docs"}
    assert response.json()["error_code"] == "UNAUTHENTICATED"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert len(response.raw.headers.getlist("www-authenticate")) == 1  # NGINX copies it too
    assert response.headers["cache-control"] == "no-store"
    assert "max-age=" in response.headers["strict-transport-security"]
    malformed = stack.mlflow.get(SEARCH, headers=bearer("hk_live_nonsense"))
    assert malformed.status_code == 401
    assert 'error="invalid_token"' in malformed.headers["www-authenticate"]


def test_read_key_cannot_write(stack: NginxStack) -> None:
    _, new = stack.service().create_key(
        user_email="ro@example.com", name="nginx-ro", scopes=["mlflow:read"]
    )
    assert stack.mlflow.get(SEARCH, headers=bearer(new.token)).status_code == 200
    denied = stack.mlflow.post(CREATE, headers=bearer(new.token), json={"name": "nope"})
    assert denied.status_code == 403
    assert denied.json()["error"] == "forbidden"
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]


def test_revoked_key_is_401_within_a_second(stack: NginxStack) -> None:
    service = stack.service()
    view, new = service.create_key(user_email="rv@example.com", name="nginx-rv")
    assert stack.mlflow.get(SEARCH, headers=bearer(new.token)).status_code == 200
    service.revoke_key(view.key_id)
    took = poll(
        lambda: stack.mlflow.get(SEARCH, headers=bearer(new.token)).status_code == 401, timeout=1.0
    )
    assert took <= 1.0


def test_authz_down_is_503(stack: NginxStack) -> None:
    _, new = stack.service().create_key(user_email="dn@example.com", name="nginx-down")
    response = stack.authz_down.get(SEARCH, headers=bearer(new.token))
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert response.headers["retry-after"] == "1"
    assert "www-authenticate" not in response.headers


def test_upstream_never_receives_credentials(stack: NginxStack) -> None:
    view, new = stack.service().create_key(
        user_email="up@example.com", name="nginx-up", scopes=["mlflow:read"]
    )
    before = len(stack.echo_upstream.requests)
    forged = {
        "x-hokusai-key-id": "forged",
        "x-hokusai-user-id": "0",
        "x-hokusai-scopes": "admin",
        "x-hokusai-admin": "1",
    }
    sent = [
        stack.echo.get("/api/mlflow/a?x=1", headers={**bearer(new.token), **forged}),
        stack.echo.get("/api/mlflow/b", headers={"X-API-Key": new.token}),
        stack.echo.get(f"/api/mlflow/c?api_key={new.token}&y=2"),
        stack.echo.get(f"/api/mlflow/d?y=1&api_key={new.token}"),
        stack.echo.get(f"/api/mlflow/e?y=1&api_key={new.token}&z=3"),
        stack.echo.get(f"/api/mlflow/f?api_key={new.token}"),
        # Sent raw: requests would normalise %5F to "_". authz's parse_qsl decodes the name.
        stack.echo.raw_get(f"/api/mlflow/g?y=api_key&api%5Fke%79={new.token}"),
        stack.echo.get(f"/api/mlflow/h?api_keys=1&xapi_key=2&api_key={new.token}&api_key2=3"),
    ]
    assert [r.status_code for r in sent] == [200] * len(sent), [r.text for r in sent]
    seen = stack.echo_upstream.requests[before:]
    assert [r.path for r in seen] == [
        "/a?x=1",
        "/b",
        "/c?y=2",
        "/d?y=1",
        "/e?y=1&z=3",
        "/f",
        "/g?y=api_key",
        "/h?api_keys=1&xapi_key=2&api_key2=3",
    ]
    for request in seen:
        assert not {"authorization", "x-api-key", "x-hokusai-admin"} & set(request.headers)
        assert new.parsed.secret not in json.dumps(request.headers) + request.path
        assert request.headers[wire.KEY_ID_HEADER] == view.key_id
        assert request.headers[wire.USER_ID_HEADER] == str(view.user_id)
        assert request.headers[wire.SCOPES_HEADER] == "mlflow:read"
        assert request.headers["host"] == "localhost"


def test_two_api_key_parameters_never_reach_the_upstream(stack: NginxStack) -> None:
    _, new = stack.service().create_key(user_email="two@example.com", name="nginx-two")
    before = len(stack.echo_upstream.requests)
    response = stack.echo.get(f"/api/mlflow/x?api_key={new.token}&api_key={new.token}")
    assert response.status_code == 400
    assert response.json()["error"] == "multiple_credentials"
    assert len(stack.echo_upstream.requests) == before


def test_forged_check_headers_are_replaced(stack: NginxStack) -> None:
    _, new = stack.service().create_key(
        user_email="fg@example.com",
        name="nginx-fg",
        scopes=["mlflow:read"],
        allowed_ips=["10.0.0.0/8"],
    )
    forged = {
        **bearer(new.token),
        "X-Forwarded-For": "10.1.2.3",
        "X-Original-URI": "/api/mlflow/api/2.0/mlflow/experiments/search",
        "X-Original-Method": "GET",
    }
    assert stack.mlflow.get(SEARCH, headers=forged).status_code == 403
    _, reader = stack.service().create_key(
        user_email="fg@example.com", name="nginx-fg2", scopes=["mlflow:read"]
    )
    lying = {
        **bearer(reader.token),
        "X-Original-Method": "GET",
        "X-Original-URI": "/api/mlflow/api/2.0/mlflow/experiments/search",
    }
    assert stack.mlflow.post(CREATE, headers=lying, json={"name": "x"}).status_code == 403


def test_public_routes_and_404(stack: NginxStack) -> None:
    assert stack.mlflow.get("/health").status_code == 200
    assert stack.mlflow.get(wire.MLFLOW_HEALTH_PATH).status_code == 200
    for path in ("/nowhere", "/_hokusai_check"):
        response = stack.mlflow.get(path)
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    plain = requests.get(
        f"http://127.0.0.1:{stack.mlflow.server.options.http_port}/health",
        allow_redirects=False,
        timeout=5,
    )
    assert plain.status_code == 301


def test_the_old_mlflow_path_redirects_before_the_check(stack: NginxStack) -> None:
    """As through Envoy: /mlflow and /mlflow/… answer 308 to /api/mlflow/… without a key; the
    MLflow client then follows with its method, body and key (tests/e2e/test_client_server.py)."""
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    moved = stack.mlflow.get("/mlflow" + search, allow_redirects=False)
    assert moved.status_code == 308
    assert moved.headers["location"] == f"{stack.mlflow.url}/api/mlflow{search}"
    bare = stack.mlflow.get("/mlflow?x=1", allow_redirects=False)
    assert bare.status_code == 308
    assert bare.headers["location"] == f"{stack.mlflow.url}/api/mlflow/?x=1"
    _, new = stack.service().create_key(
        user_email="old@example.com", name="nginx-old", scopes=["mlflow:read", "mlflow:write"]
    )
    create = stack.mlflow.url + "/mlflow/api/2.0/mlflow/experiments/create"
    answer = requests.post(
        create,
        headers=bearer(new.token),
        json={"name": "nginx-old-path"},
        verify=stack.mlflow.ca,
        timeout=10,
    )
    assert answer.status_code == 200 and answer.json()["experiment_id"]


def test_logs_never_hold_the_query_string(stack: NginxStack) -> None:
    _, new = stack.service().create_key(user_email="lg@example.com", name="nginx-lg")
    stack.echo.get(f"/api/mlflow/log?api_key={new.token}")
    stack.authz_down.get(f"/api/mlflow/log?api_key={new.token}")
    for fronted in (stack.echo, stack.authz_down):
        run = Path(fronted.server.options.runtime_dir)
        poll(
            lambda r=run: "/api/mlflow/log" in (r / "access.log").read_text(),  # type: ignore[misc]
            timeout=5,
        )
        for log in run.glob("*.log"):
            assert new.parsed.secret not in log.read_text(errors="replace"), log


def docs_commands() -> list[str]:
    """The ``$ `` lines of the ``console`` blocks of docs/nginx.md (``text`` blocks are config)."""
    blocks = re.findall(r"```console\n(.*?)```", DOCS.read_text(), flags=re.S)
    return [
        line.strip()[2:]
        for block in blocks
        for line in block.splitlines()
        if line.strip().startswith("$ ")
    ]


def test_docs_commands_run_and_the_committed_config_is_current() -> None:
    assert nginx_config.main(["--check"]) == 0  # first: the docs' --write would hide staleness
    commands = docs_commands()
    assert commands, "docs/nginx.md lost its console block"
    root = nginx_config.REPO_ROOT
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "python", command  # only the generator is run from the docs
        done = subprocess.run(
            [sys.executable, *argv[1:]],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (command, done.stderr)
    log_format = (root / "nginx" / "gateway.conf").read_text().split("log_format")[1]
    statement = log_format.split(";")[0]
    logged = set(re.findall(r"\$([a-z_]+)", statement))
    assert "uri" in logged
    assert not {"request", "request_uri", "args", "query_string", "arg_api_key"} & logged
