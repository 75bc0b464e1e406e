"""Every server one benchmark run needs, started once from the main thread and stopped in reverse
(process groups, also on Ctrl-C): Postgres, Redis, the real authz (one process per rate-limit
configuration), the two Python floors, one Envoy per configuration (each with its own
direct-response upstream listener) and, unless skipped, two MLflow servers (one behind the full
gateway, one with MLflow's own basic-auth app).

The default cell ("ours, default settings") is built by the local stack's own builders
(``cli.stack.LocalStack.authz_env`` and ``envoy_options`` with ``Settings()`` and
``StackOptions()``: what ``make up`` runs); only what belongs to this machine differs — the
bench's Postgres and Redis, free ports, plain HTTP like every other cell, the upstream in MLflow's
place, no keys API — and the local shield's bucket is widened so that it never answers (the
shipped 1000 requests/s per Envoy would turn the measurement into local 429s; its cost stays in).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from authz.keys import format as key_format
from authz.management.service import open_key_service
from authz.settings import Settings
from authz.storage.migrations import migrate
from bench import envoy as bench_envoy
from bench.upstream import with_upstream
from cli import envoy_config
from cli.envoy_config import Endpoint
from cli.servers import (
    EnvoyServer,
    ManagedProcess,
    MlflowServer,
    PostgresServer,
    RedisServer,
    free_port,
)
from cli.stack import AuthzProcess, LocalStack, StackOptions, service_env

REPO_ROOT = Path(__file__).resolve().parent.parent
NATIVE_KEYS = 1000
ALLOWED_IPS = ("127.0.0.0/8", "192.0.2.0/24")  # Envoy appends its host address for loopback
BASIC_AUTH_USER = "admin"
# D: no per-key limit (enforcement=envoy, and D's Envoy has no ratelimit filter: nobody asks).
NO_LIMITS = {"HOKUSAI_RATE_LIMIT_ENFORCEMENT": "envoy"}
# One authz process per rate-limit configuration (bench/harness.py names the cells):
# exact / approx: the limit decided inside the Check (the default enforcement) with the exact
# (lease) or the approximate limiter; envoy: Envoy's global ratelimit filter → RateLimitService.
LIMIT_VARIANTS: dict[str, dict[str, str]] = {
    "exact": {"HOKUSAI_RATE_LIMIT_ENFORCEMENT": "check", "HOKUSAI_RATE_LIMIT_MODE": "exact"},
    "approx": {"HOKUSAI_RATE_LIMIT_ENFORCEMENT": "check", "HOKUSAI_RATE_LIMIT_MODE": "approximate"},
    "envoy": {"HOKUSAI_RATE_LIMIT_ENFORCEMENT": "envoy", "HOKUSAI_RATE_LIMIT_MODE": "exact"},
}
# Envoys in front of them: (name, variant, transport, gRPC access log on).
LIMIT_ENVOYS: tuple[tuple[str, str, str, bool], ...] = (
    ("L-http", "exact", "http", False),
    ("E-exact-grpc", "exact", "grpc", True),
    ("E-exact-http", "exact", "http", True),
    ("E-approx-grpc", "approx", "grpc", True),
    ("E-approx-http", "approx", "http", True),
    ("E-envoy-http", "envoy", "http", True),
)
WIDE_OPEN = envoy_config.LocalRateLimit(10_000_000, 10_000_000, 1.0)  # the shield, never binding


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class FloorProcess(ManagedProcess):
    """``python -m bench.floor_grpc|floor_http``: ready once its port accepts connections."""

    def __init__(self, module: str, log_dir: Path, keys_file: Path) -> None:
        self.name = module.rsplit(".", 1)[1]
        super().__init__(log_dir)
        self.module, self.keys_file, self.port = module, keys_file, free_port()

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            self.module,
            "--port",
            str(self.port),
            "--keys",
            str(self.keys_file),
        ]

    def popen_options(self) -> dict[str, Any]:
        return {"cwd": str(REPO_ROOT)}

    def ready(self) -> bool:
        return _port_open(self.port)


class BasicAuthMlflow(MlflowServer):
    """The same MLflow with ``--app-name basic-auth``, its admin user bootstrapped from env."""

    name = "mlflow-basic-auth"

    def __init__(self, data_dir: Path, password: str) -> None:
        super().__init__(data_dir, extra_args=["--app-name", "basic-auth"])
        self.password = password

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ini = self.data_dir / "basic_auth.ini"
        ini.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = sqlite:///{self.data_dir / 'basic_auth.db'}\n"
            f"admin_username = {BASIC_AUTH_USER}\n"
        )

    def popen_options(self) -> dict[str, Any]:
        env = dict(os.environ)
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(self.data_dir / "basic_auth.ini")
        env["MLFLOW_AUTH_ADMIN_PASSWORD"] = self.password
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = self.password + "-csrf"
        return {"env": env}


@dataclass
class Credentials:
    """The bench's keys: the allowed one and the three denials of F."""

    valid: str = ""
    unknown: str = ""
    wrong_secret: str = ""
    revoked: str = ""
    native: list[str] = field(default_factory=list)


@dataclass
class Envoy:
    port: int
    server: EnvoyServer


class BenchStack:
    def __init__(self, work: Path, *, with_mlflow: bool) -> None:
        self.work = work
        self.with_mlflow = with_mlflow
        self.settings = Settings()  # the defaults: bcrypt cost as shipped
        self.parts: list[ManagedProcess] = []
        self.creds = Credentials()
        self.envoys: dict[str, Envoy] = {}
        self.authz: AuthzProcess | None = None
        self.e_authz: dict[str, tuple[AuthzProcess, int, int]] = {}  # name → (process, gRPC, HTTP)
        self.default_authz: AuthzProcess | None = None
        self.floors: dict[str, FloorProcess] = {}
        self.grpc_port = self.http_port = 0
        self.basic_auth_url = ""
        self.basic_password = secrets.token_urlsafe(16)
        self.database_url = ""

    # --- life cycle ------------------------------------------------------------------------
    def __enter__(self) -> BenchStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self, part: ManagedProcess) -> ManagedProcess:
        self.parts.append(part)
        part.start()
        return part

    def stop(self) -> None:
        while self.parts:
            part = self.parts.pop()
            with contextlib.suppress(Exception):
                part.stop(grace=5.0)

    def start(self) -> None:
        logs = self.work / "logs"
        postgres = PostgresServer(self.work / "pg", fast=True)
        self._run(postgres)
        self.database_url = postgres.url
        migrate(postgres.url)
        redis = RedisServer(self.work / "redis")
        self._run(redis)
        self._make_keys(postgres.url)
        keys_file = self.work / "floor-key_format.txt"
        keys_file.write_text("\n".join([self.creds.valid, *self.creds.native]) + "\n")
        keys_file.chmod(0o600)
        for module in ("bench.floor_grpc", "bench.floor_http"):
            self.floors[module.rsplit("_", 1)[1]] = self._run(  # type: ignore[assignment]
                FloorProcess(module, logs, keys_file)
            )
        self._start_authz(postgres.url, redis.url, logs)
        self._start_envoys(logs)
        self._start_default(postgres.url, redis.url, logs)
        if self.with_mlflow:
            self._start_mlflow(logs)

    # --- parts -----------------------------------------------------------------------------
    def _make_keys(self, url: str) -> None:
        service = open_key_service(url, self.settings, "bench")
        view, new = service.create_key(
            user_email="bench@example.com",
            name="bench",
            scopes=["mlflow:read", "mlflow:write"],
            # Limited, but never binding: the limit cells measure deciding, not 429s (10M/h,
            # 2800/s, ran out within a minute of interleaved cells at 5000+ requests/s).
            rate_limit_per_hour=1_000_000_000,
            burst=10_000_000,
            allowed_ips=ALLOWED_IPS,
            metadata={"team": "bench"},
        )
        _, revoked = service.create_key(
            user_email="bench@example.com", name="revoked", allowed_ips=ALLOWED_IPS
        )
        service.revoke_key(revoked.parsed.key_id, "bench")
        self.creds.valid = new.token
        self.creds.revoked = revoked.token
        self.creds.wrong_secret = key_format.generate("live", view.key_id).token
        self.creds.unknown = key_format.generate("live").token
        self.creds.native = [secrets.token_urlsafe(32) for _ in range(NATIVE_KEYS)]

    def _authz_process(
        self, database_url: str, redis_url: str, log_dir: Path, extra: dict[str, str]
    ) -> tuple[AuthzProcess, int, int]:
        grpc_port, http_port = free_port(), free_port()
        env = service_env(
            self.settings,
            {
                "HOKUSAI_DATABASE_URL": database_url,
                "HOKUSAI_REDIS_URL": redis_url,
                "HOKUSAI_GRPC_PORT": str(grpc_port),
                "HOKUSAI_HTTP_CHECK_PORT": str(http_port),
                "HOKUSAI_PEPPER": secrets.token_urlsafe(32),
                "HOKUSAI_LOG_LEVEL": "warning",
                **extra,
            },
        )
        process = self._run(AuthzProcess(log_dir, env, http_port))
        return process, grpc_port, http_port  # type: ignore[return-value]

    def _start_authz(self, database_url: str, redis_url: str, logs: Path) -> None:
        self.authz, self.grpc_port, self.http_port = self._authz_process(
            database_url, redis_url, logs, NO_LIMITS
        )
        for name, extra in LIMIT_VARIANTS.items():
            self.e_authz[name] = self._authz_process(
                database_url, redis_url, logs / f"authz-{name}", extra
            )

    def _envoy(self, name: str, config: dict[str, Any], port: int, logs: Path) -> None:
        path = self.work / f"envoy-{name}.json"
        path.write_text(json.dumps(config))
        admin = int(config["admin"]["address"]["socket_address"]["port_value"])
        server = EnvoyServer(path, admin, logs / f"envoy-{name}", concurrency=1)
        self._run(server)
        self.envoys[name] = Envoy(port, server)

    def _bench_envoy(
        self,
        name: str,
        variant: bench_envoy.BenchVariant,
        authz: Endpoint | None,
        logs: Path,
        **extras: Any,
    ) -> None:
        port, upstream = free_port(), free_port()
        config = bench_envoy.render_bench(
            variant,
            port=port,
            admin_port=free_port(),
            upstream=Endpoint("127.0.0.1", upstream),
            authz=authz,
            api_keys=self.creds.native if variant == "api_key_auth" else (),
            **extras,
        )
        self._envoy(name, with_upstream(config, upstream), port, logs)

    def _start_envoys(self, logs: Path) -> None:
        local = "127.0.0.1"
        self._bench_envoy("A", "plain", None, logs)
        self._bench_envoy("B", "api_key_auth", None, logs)
        self._bench_envoy(
            "C-grpc", "ext_authz_grpc", Endpoint(local, self.floors["grpc"].port), logs
        )
        self._bench_envoy(
            "C-http", "ext_authz_http", Endpoint(local, self.floors["http"].port), logs
        )
        self._bench_envoy("D-grpc", "ext_authz_grpc", Endpoint(local, self.grpc_port), logs)
        self._bench_envoy("D-http", "ext_authz_http", Endpoint(local, self.http_port), logs)
        for name, variant, transport, access_log in LIMIT_ENVOYS:
            _process, grpc_port, http_port = self.e_authz[variant]
            services = Endpoint(local, grpc_port)  # RateLimitService and the access log
            check = services if transport == "grpc" else Endpoint(local, http_port)
            self._bench_envoy(
                name,
                "ext_authz_grpc" if transport == "grpc" else "ext_authz_http",
                check,
                logs,
                rate_limit=LIMIT_VARIANTS[variant]["HOKUSAI_RATE_LIMIT_ENFORCEMENT"] == "envoy",
                access_log_grpc=access_log,
                authz_grpc=services,
            )

    def _start_default(self, database_url: str, redis_url: str, logs: Path) -> None:
        """ "Ours, default settings": ``make up``'s authz environment and Envoy options, from the
        local stack's builders (see the module docstring for what differs, and why)."""
        port, upstream = free_port(), free_port()
        data_dir = self.work / "default-stack"
        data_dir.mkdir()
        local = LocalStack(StackOptions(data_dir, http_port=port), Settings())
        record = local.record
        record.database_url, record.redis_url = database_url, redis_url
        record.mlflow_url = f"http://127.0.0.1:{upstream}"
        record.authz_grpc_port, record.authz_http_port = free_port(), free_port()
        record.https_port, record.http_port, record.envoy_admin_port = 0, port, free_port()
        env = local.authz_env()
        self.default_authz = self._run(  # type: ignore[assignment]
            AuthzProcess(logs / "authz-default", env, record.authz_http_port)
        )
        options = replace(
            local.envoy_options(),
            tls_cert_path=None,
            tls_key_path=None,
            local_rate_limit=WIDE_OPEN,
        )
        self._envoy("S-http", with_upstream(envoy_config.render(options), upstream), port, logs)

    def _start_mlflow(self, logs: Path) -> None:
        plain = self._run(MlflowServer(self.work / "mlflow"))
        basic = self._run(BasicAuthMlflow(self.work / "mlflow-basic", self.basic_password))
        self.basic_auth_url = f"http://127.0.0.1:{basic.port}"
        port = free_port()
        options = envoy_config.EnvoyOptions(
            listen_address="127.0.0.1",
            http_port=port,
            admin_port=free_port(),
            tls_cert_path=None,
            tls_key_path=None,
            authz_grpc=Endpoint("127.0.0.1", self.grpc_port),
            authz_http=Endpoint("127.0.0.1", self.http_port),
            mlflow=Endpoint("127.0.0.1", plain.port),
            keys_api=None,
            rate_limit=envoy_config.RateLimitOptions(enabled=False),
            local_rate_limit=None,
            access_log_grpc=False,
            access_log_stdout="off",
        )
        self._envoy("G-ours", envoy_config.render(options), port, logs)

    def pids(self) -> dict[str, int | None]:
        return {
            "authz": self.authz.pid if self.authz else None,
            "floor-grpc": self.floors["grpc"].pid,
            "floor-http": self.floors["http"].pid,
            **{f"authz-{name}": e[0].pid for name, e in self.e_authz.items()},
            "authz-default": self.default_authz.pid if self.default_authz else None,
        }


def basic_header(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
