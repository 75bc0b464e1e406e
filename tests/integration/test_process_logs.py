"""Every process installs the redacting logger: the Check server (``python -m authz``), the keys
REST API (``python -m authz.api``) and the CLI (the ``hokusai`` console script).

Each runs as a real subprocess at debug level against the test Postgres, with a whole key in
reach — in its environment, in its argv and in the requests it answers — and no byte of the key's
secret may appear in what it writes. The servers must also show that their lines went through the
redacting handler (``HOKUSAI_LOG_FORMAT=json``: one JSON object per line, uvicorn's included).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from authz.keys import format as keys
from authz.keys.format import KEY_PATTERN
from authz.management.service import KeyService
from authz.settings import Settings
from authz.storage.db import connector
from cli.servers import free_port, http_ok

HOKUSAI = Path(sys.executable).parent / "hokusai"


@pytest.fixture
def token(database_url: str) -> str:
    service = KeyService(connector(database_url), Settings(bcrypt_cost=4), "test:logs")
    _view, new = service.create_key(
        user_email="logs@example.com", name="logs", scopes=["keys:manage", "mlflow:read"]
    )
    return new.token


def environment(token: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOKUSAI_")}
    env.update({"HOKUSAI_LOG_LEVEL": "debug", "HOKUSAI_LOG_FORMAT": "json", **settings})
    env.update({"API_KEY": token, "MLFLOW_TRACKING_TOKEN": token})  # in reach, never read
    return env


def assert_no_key_bytes(output: str, token: str) -> None:
    secret = keys.parse(token).secret  # type: ignore[union-attr]
    assert token not in output and secret not in output
    assert secret[:16] not in output and secret[-16:] not in output
    assert re.search(KEY_PATTERN, output) is None


def json_loggers(output: str) -> set[str]:
    """The logger of every line, all of which must be JSON objects (the redacting formatter)."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, "the process logged nothing at debug level"
    return {json.loads(line)["logger"] for line in lines}


@contextmanager
def serving(command: list[str], env: dict[str, str], health: str) -> Iterator[list[str]]:
    """Run a server until the block ends; yields a list that then holds its stdout + stderr."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    captured: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not http_ok(health):
            assert process.poll() is None, process.communicate()[1].decode(errors="replace")
            assert time.monotonic() < deadline, f"{command} did not start"
            time.sleep(0.1)
        yield captured
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        captured.append(out.decode(errors="replace") + err.decode(errors="replace"))


def request(port: int, method: str, path: str, headers: dict[str, str], body: str = "") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body.encode(), headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def attempts(token: str) -> list[tuple[str, dict[str, str]]]:
    """The key sent every way a client might, right and wrong (query values URL-safe as is)."""
    wrong = token[:-8] + ("A" if token[-8] != "A" else "B") + token[-7:]
    return [
        ("", {"authorization": f"Bearer {token}"}),
        ("", {"x-api-key": token}),
        (f"?api_key={token}", {}),
        ("", {"authorization": f"Bearer {wrong}"}),
        ("", {"authorization": f"Bearer {token}x"}),
        (f"?api_key={token}", {"x-api-key": token}),
    ]


def test_the_check_server_logs_no_key(database_url: str, token: str) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = environment(
        token,
        HOKUSAI_DATABASE_URL=database_url,
        HOKUSAI_GRPC_PORT=str(grpc_port),
        HOKUSAI_HTTP_CHECK_PORT=str(http_port),
    )
    health = f"http://127.0.0.1:{http_port}/health"
    with serving([sys.executable, "-m", "authz", token], env, health) as output:
        path = "/check/api/mlflow/api/2.0/mlflow/experiments/get"
        statuses = [request(http_port, "GET", path + q, h) for q, h in attempts(token)]
        assert statuses == [200, 200, 200, 401, 401, 401]
    assert "authz.server" in json_loggers(output[0])
    assert_no_key_bytes(output[0], token)


def test_the_keys_api_logs_no_key(database_url: str, token: str) -> None:
    port = free_port()
    env = environment(token, HOKUSAI_DATABASE_URL=database_url, HOKUSAI_API_PORT=str(port))
    health = f"http://127.0.0.1:{port}/api/v1/auth/health"
    with serving([sys.executable, "-m", "authz.api", token], env, health) as output:
        path = "/api/v1/auth/whoami"
        statuses = [request(port, "GET", path + q, h) for q, h in attempts(token)]
        assert statuses == [200, 200, 401, 401, 401, 200]  # the query string is never read
        body = json.dumps({"name": token, "scopes": [token], "allowed_ips": [token]})
        auth = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        assert request(port, "POST", "/api/v1/auth/keys", auth, body) == 422
    assert "uvicorn.error" in json_loggers(output[0])  # uvicorn's own lines are redacted too
    assert_no_key_bytes(output[0], token)


def test_the_cli_logs_no_key(database_url: str, token: str) -> None:
    env = environment(token, HOKUSAI_DATABASE_URL=database_url)
    dead = f"postgresql://u:{token}@127.0.0.1:{free_port()}/x"
    commands = [
        ["auth", "show-key", token],
        ["auth", "usage", token],
        ["auth", "revoke-key", token, "--reason", token],
        ["auth", "list-keys", "--database-url", dead],
        ["auth", "update-key", token[8:20], "--name", token, "--database-url", dead],
    ]
    for command in commands:
        done = subprocess.run(
            [str(HOKUSAI), *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode in (1, 2), (command, done.stderr)
        assert_no_key_bytes(done.stdout + done.stderr, token)


def test_the_console_script_installs_the_redacting_logger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``hokusai`` (``cli.main.run``) puts the redacting handler on the root logger."""
    import logging

    from authz.telemetry.logs import RedactingFilter
    from cli import main as cli_main

    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    monkeypatch.setattr(cli_main, "main", lambda: 0)
    try:
        assert cli_main.run() == 0
        assert any(isinstance(f, RedactingFilter) for h in root.handlers for f in h.filters)
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
