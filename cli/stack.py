"""The local stack behind ``hokusai gateway up``: every part of the gateway on one machine.

Postgres and Redis (embedded unless ``HOKUSAI_DATABASE_URL`` / ``HOKUSAI_REDIS_URL`` are set),
migrations, an MLflow server (unless ``--mlflow-url``), the authz server, the keys REST API and
Envoy with TLS from a private CA. Everything lives in one data directory, whose ``stack.json``
tells the other commands (``hokusai auth …``, ``gateway status``, ``gateway env``) where the
parts are. Parts start in dependency order and stop in reverse.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from authz.settings import Settings
from authz.transports import wire
from cli import envoy_config
from cli.servers import (
    EnvoyServer,
    ManagedProcess,
    MlflowServer,
    PostgresServer,
    RedisServer,
    free_port,
    http_ok,
)
from cli.tls import ensure_certificates

STACK_FILE = "stack.json"
BOOTSTRAP_USER = "admin@hokusai.localhost"


@dataclass
class StackRecord:
    """What ``stack.json`` holds: where each part of a running (or last) stack is."""

    database_url: str = ""
    redis_url: str = ""
    mlflow_url: str = ""
    https_port: int = 0
    http_port: int = 0
    authz_grpc_port: int = 0
    authz_http_port: int = 0
    keys_api_port: int = 0
    envoy_admin_port: int = 0
    ca_cert: str = ""
    bootstrapped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"https://localhost:{self.https_port}"

    def save(self, data_dir: Path) -> None:
        path = data_dir / STACK_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        os.chmod(path, 0o600)  # it holds the database password

    @classmethod
    def load(cls, data_dir: Path) -> StackRecord:
        path = data_dir / STACK_FILE
        if not path.exists():
            raise FileNotFoundError(f"no local stack in {data_dir} (run: hokusai gateway up)")
        known = {
            k: v for k, v in json.loads(path.read_text()).items() if k in cls.__dataclass_fields__
        }
        return cls(**known)


class AuthzProcess(ManagedProcess):
    """``python -m authz`` configured through its HOKUSAI_* environment."""

    name = "authz"
    startup_timeout = 30.0

    def __init__(self, log_dir: Path, env: dict[str, str], http_port: int) -> None:
        super().__init__(log_dir)
        self.env, self.http_port = env, http_port

    def command(self) -> list[str]:
        return [sys.executable, "-m", "authz"]

    def popen_options(self) -> dict[str, Any]:
        return {"env": self.env}

    def ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.http_port}/health")


class KeysApiProcess(ManagedProcess):
    """``python -m authz.api``: the keys REST API (uvicorn), behind Envoy's /api/v1/auth/."""

    name = "keys-api"
    startup_timeout = 30.0

    def __init__(self, log_dir: Path, env: dict[str, str], port: int) -> None:
        super().__init__(log_dir)
        self.env, self.port = env, port

    def command(self) -> list[str]:
        return [sys.executable, "-m", "authz.api"]

    def popen_options(self) -> dict[str, Any]:
        return {"env": self.env}

    def ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.port}{wire.KEYS_API_PREFIX}health")


def _secret_file(path: Path) -> str:
    """A random secret kept in ``path`` (0600), made on first use."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        os.chmod(path, 0o600)
    return path.read_text().strip()


def service_env(settings: Settings, overrides: dict[str, str]) -> dict[str, str]:
    """The environment for a child: ours without HOKUSAI_* settings, plus the stack's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOKUSAI_")}
    env.update({"HOKUSAI_BCRYPT_COST": str(settings.bcrypt_cost)})
    env.update(overrides)
    return env


@dataclass
class StackOptions:
    data_dir: Path
    https_port: int = 8443
    http_port: int = 8080
    mlflow_url: str | None = None
    transport: str = "http"  # hokusai gateway up's default (the measured fast path)
    extra_authz_env: dict[str, str] = field(default_factory=dict)
    # EnvoyOptions fields to override (tests add recording routes this way).
    envoy_overrides: dict[str, Any] = field(default_factory=dict)


class LocalStack:
    def __init__(self, options: StackOptions, settings: Settings) -> None:
        self.options = options
        self.settings = settings
        self.data_dir = options.data_dir.resolve()
        self.parts: list[ManagedProcess] = []
        self.record = StackRecord()

    def start(self) -> StackRecord:
        """Start every part (reusing the data directory); on failure stop what started."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        previous = self._previous()
        try:
            self._start_stores()
            self._start_mlflow()
            self._start_authz()
            self._start_keys_api()
            self._start_envoy()
        except BaseException:
            self.stop()
            raise
        self.record.bootstrapped = previous.bootstrapped
        self.record.save(self.data_dir)
        return self.record

    def _previous(self) -> StackRecord:
        try:
            return StackRecord.load(self.data_dir)
        except (FileNotFoundError, ValueError, TypeError):
            return StackRecord()

    def _run(self, part: ManagedProcess) -> None:
        part.start()
        self.parts.append(part)

    def _start_stores(self) -> None:
        from authz.storage.migrations import migrate

        if self.settings.database_url:
            self.record.database_url = self.settings.database_url
        else:
            postgres = PostgresServer(self.data_dir / "postgres")
            self._run(postgres)
            self.record.database_url = postgres.url
        migrate(self.record.database_url)
        if self.settings.redis_url:
            self.record.redis_url = self.settings.redis_url
        else:
            redis = RedisServer(self.data_dir / "redis")
            self._run(redis)
            self.record.redis_url = redis.url

    def _start_mlflow(self) -> None:
        if self.options.mlflow_url:
            self.record.mlflow_url = self.options.mlflow_url.rstrip("/")
            return
        mlflow = MlflowServer(self.data_dir / "mlflow")
        self._run(mlflow)
        self.record.mlflow_url = mlflow.url

    def authz_env(self) -> dict[str, str]:
        return service_env(
            self.settings,
            {
                "HOKUSAI_DATABASE_URL": self.record.database_url,
                "HOKUSAI_REDIS_URL": self.record.redis_url,
                "HOKUSAI_GRPC_PORT": str(self.record.authz_grpc_port),
                "HOKUSAI_HTTP_CHECK_PORT": str(self.record.authz_http_port),
                "HOKUSAI_PEPPER": _secret_file(self.data_dir / "pepper"),
                # Where the per-key limit is enforced decides Envoy's filters too (envoy_options).
                "HOKUSAI_RATE_LIMIT_ENFORCEMENT": self.settings.rate_limit_enforcement,
                "HOKUSAI_RATE_LIMIT_MODE": self.settings.rate_limit_mode,
                **self.options.extra_authz_env,
            },
        )

    def _start_authz(self) -> None:
        self.record.authz_grpc_port = free_port()
        self.record.authz_http_port = free_port()
        self._run(
            AuthzProcess(self.data_dir / "logs", self.authz_env(), self.record.authz_http_port)
        )

    def _start_keys_api(self) -> None:
        """After authz: same stores and pepper, its own port (Envoy routes /api/v1/auth/ here)."""
        self.record.keys_api_port = free_port()
        env = {**self.authz_env(), "HOKUSAI_API_PORT": str(self.record.keys_api_port)}
        self._run(KeysApiProcess(self.data_dir / "logs", env, self.record.keys_api_port))

    def envoy_options(self) -> envoy_config.EnvoyOptions:
        certs = ensure_certificates(self.data_dir / "tls")
        self.record.ca_cert = str(certs.ca_cert)
        mlflow = urlsplit(self.record.mlflow_url)
        options = envoy_config.EnvoyOptions(
            listen_address="127.0.0.1",
            https_port=self.record.https_port,
            http_port=self.record.http_port,
            public_https_port=self.record.https_port,
            admin_port=self.record.envoy_admin_port,
            tls_cert_path=str(certs.server_cert),
            tls_key_path=str(certs.server_key),
            transport=self.options.transport,  # type: ignore[arg-type]
            authz_grpc=envoy_config.Endpoint("127.0.0.1", self.record.authz_grpc_port),
            authz_http=envoy_config.Endpoint("127.0.0.1", self.record.authz_http_port),
            mlflow=envoy_config.Endpoint(mlflow.hostname or "127.0.0.1", mlflow.port or 80),
            keys_api=(
                envoy_config.Endpoint("127.0.0.1", self.record.keys_api_port)
                if self.record.keys_api_port
                else None
            ),
            # Per-key limits (fail mode from HOKUSAI_RATE_LIMIT_REDIS_DOWN) and usage via the ALS.
            # With enforcement in the Check, Envoy must not call the RateLimitService as well.
            rate_limit=envoy_config.RateLimitOptions(
                enabled=self.authz_env()["HOKUSAI_RATE_LIMIT_ENFORCEMENT"] == "envoy",
                failure_mode_deny=self.settings.rate_limit_redis_down == "deny",
            ),
            access_log_grpc=True,
            access_log_stdout=cast(envoy_config.AccessLog, self.settings.access_log),
        )
        return dataclasses.replace(options, **self.options.envoy_overrides)

    def _start_envoy(self) -> None:
        self.record.https_port = self.options.https_port
        self.record.http_port = self.options.http_port
        self.record.envoy_admin_port = free_port()
        config = self.data_dir / "envoy.yaml"
        envoy_config.write(self.envoy_options(), config)
        self._run(EnvoyServer(config, self.record.envoy_admin_port, self.data_dir / "logs"))

    def stop(self) -> None:
        """Stop every part, last started first."""
        while self.parts:
            self.parts.pop().stop()
