"""``hokusai gateway up|status|env``: the local stack on one machine."""

from __future__ import annotations

import argparse
import signal
import ssl
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from authz.settings import Settings, data_dir
from authz.storage import db
from cli.db_commands import actor
from cli.servers import http_ok
from cli.stack import BOOTSTRAP_USER, LocalStack, StackOptions, StackRecord
from hokusai import variables


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or data_dir()).expanduser()


def _bootstrap_key(record: StackRecord, settings: Settings) -> str | None:
    """The first run's admin key (None on later runs): shown once, never stored."""
    if record.bootstrapped:
        return None
    from authz.management.service import open_key_service

    service = open_key_service(record.database_url, settings, actor())
    _view, new = service.create_key(
        user_email=BOOTSTRAP_USER, name="bootstrap admin", scopes=["admin"]
    )
    record.bootstrapped = True
    return new.token


def _print_ready(record: StackRecord, token: str | None) -> None:
    print(f"gateway:  {record.gateway_url}  (MLflow at {record.gateway_url}/api/mlflow)")
    print(f"CA:       {record.ca_cert}")
    print(f"database: {db.redact_url(record.database_url)}")
    if token:
        print(f"admin key: {token}")
        print(
            "warning: this admin key is shown once and never again; store it now.", file=sys.stderr
        )
    print("ready (Ctrl-C stops every part)", flush=True)


def _up(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    directory = _data_dir(args)
    stack = LocalStack(
        StackOptions(directory, args.https_port, args.http_port, args.mlflow_url, args.transport),
        settings,
    )
    stopping = threading.Event()
    previous = {
        s: signal.signal(s, lambda *_: stopping.set()) for s in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        record = stack.start()
        token = _bootstrap_key(record, settings)
        record.save(stack.data_dir)
        _print_ready(record, token)
        while not stopping.wait(0.5):
            pass
    finally:
        print("stopping…", file=sys.stderr, flush=True)
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _https_ok(url: str, ca_cert: str) -> bool:
    try:
        context = ssl.create_default_context(cafile=ca_cert)
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def _redis_ok(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        return bool(client.ping())
    except redis.RedisError:
        return False


def health_checks(record: StackRecord) -> list[tuple[str, Callable[[], bool]]]:
    checks: list[tuple[str, Callable[[], bool]]] = [
        ("postgres", lambda: db.ping(record.database_url)),
        ("redis", lambda: _redis_ok(record.redis_url)),
        ("mlflow", lambda: http_ok(f"{record.mlflow_url}/health")),
        ("authz", lambda: http_ok(f"http://127.0.0.1:{record.authz_http_port}/health")),
        ("envoy", lambda: http_ok(f"http://127.0.0.1:{record.envoy_admin_port}/ready")),
        ("gateway", lambda: _https_ok(f"{record.gateway_url}/health", record.ca_cert)),
    ]
    if record.keys_api_port:
        checks.append(
            (
                "keys-api",
                lambda: http_ok(f"http://127.0.0.1:{record.keys_api_port}/api/v1/auth/health"),
            )
        )
    return checks


def _status(args: argparse.Namespace) -> int:
    try:
        record = StackRecord.load(_data_dir(args))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failed = 0
    for name, check in health_checks(record):
        ok = check()
        failed += not ok
        print(f"{name:<9} {'ok' if ok else 'DOWN'}")
    return 1 if failed else 0


def env_lines(record: StackRecord) -> list[str]:
    """The Python client's two settings (hokusai.setup() adds /api/mlflow itself), then the stock
    MLflow client's; the key is the reader's own."""
    return [
        f"export {variables.GATEWAY_URL}={record.gateway_url}",
        f"export {variables.CA_CERT}={record.ca_cert}",
        f"export MLFLOW_TRACKING_URI={record.gateway_url}/api/mlflow",
        f"export MLFLOW_TRACKING_SERVER_CERT_PATH={record.ca_cert}",
        f"# and your key, e.g.: export {variables.API_KEY}=hk_live_... "
        "(MLflow alone: MLFLOW_TRACKING_TOKEN)",
    ]


def _env(args: argparse.Namespace) -> int:
    try:
        record = StackRecord.load(_data_dir(args))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(env_lines(record)))
    return 0


def register(commands: Any) -> None:
    gateway = commands.add_parser("gateway", help="run the whole gateway on this machine")
    sub = gateway.add_subparsers(dest="gateway_command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="start Postgres, Redis, MLflow, authz and Envoy")
    up.add_argument("--data-dir", help="state directory (default: $HOKUSAI_DATA_DIR or ~/.hokusai)")
    up.add_argument("--https-port", type=int, default=8443)
    up.add_argument("--http-port", type=int, default=8080, help="redirects to HTTPS")
    up.add_argument("--mlflow-url", help="use this MLflow server instead of starting one")
    up.add_argument(
        "--transport",
        choices=("grpc", "http"),
        default="http",
        help="how Envoy asks authz (http is the measured fast path)",
    )
    up.set_defaults(handler=_up)
    for name, handler, text in (
        ("status", _status, "exit 0 only if every part is healthy"),
        ("env", _env, "print the exports the Python client and MLflow need"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("--data-dir", help="state directory of the stack")
        parser.set_defaults(handler=handler)
