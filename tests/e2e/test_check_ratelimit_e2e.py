"""HOKUSAI_RATE_LIMIT_ENFORCEMENT=check through REAL Envoy (no global ratelimit filter), on both
ext_authz transports: exactly B requests reach the upstream, then Envoy answers the Check's 429
with the x-ratelimit-* and retry-after headers and the JSON body; allowed responses carry the
x-ratelimit-* headers (gRPC: response_headers_to_add; HTTP: allowed_client_headers_on_success)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from authz.management.service import KeyService
from authz.settings import Settings
from authz.storage.db import connector
from cli import envoy_config as ec
from cli.servers import EnvoyServer, free_port
from tests.support.authz import running_authz
from tests.support.envoy_rig import Upstream, envoy_bootstrap

BURST = 4


@pytest.fixture(params=["grpc", "http"])
def gateway(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str, redis_url: str
) -> Iterator[tuple[str, KeyService]]:
    transport: ec.Transport = request.param
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        bcrypt_cost=4,
        rate_limit_enforcement="check",
        rate_limit_mode="approximate",
    )
    with contextlib.ExitStack() as stack:
        authz = stack.enter_context(running_authz(settings))
        port, admin = free_port(), free_port()
        config = envoy_bootstrap(
            port,
            admin,
            int(upstream.server_address[1]),
            [authz],
            transport=transport,
            rate_limit=False,
        )
        path = tmp_path / "envoy.json"
        path.write_text(json.dumps(config))
        stack.enter_context(EnvoyServer(path, admin, tmp_path / "logs"))
        yield (
            f"http://127.0.0.1:{port}",
            KeyService(connector(database_url), settings, "test:e2e"),
        )
    upstream.shutdown()
    upstream.server_close()


def test_check_mode_burst_then_429_through_envoy(gateway: tuple[str, KeyService]) -> None:
    url, svc = gateway
    _view, new = svc.create_key(
        user_email="rl@example.com", name="rl", rate_limit_per_hour=60, burst=BURST
    )
    answers = [
        requests.get(url + "/t/a", timeout=10, headers={"authorization": f"Bearer {new.token}"})
        for _ in range(BURST + 2)
    ]
    assert [a.status_code for a in answers] == [200] * BURST + [429] * 2
    assert [a.json() for a in answers[:BURST]] == [{"ok": True}] * BURST  # the upstream answered
    assert [a.headers["x-ratelimit-remaining"] for a in answers[:BURST]] == ["3", "2", "1", "0"]
    assert all(a.headers["x-ratelimit-limit"] == "60" for a in answers)
    denied = answers[BURST]
    assert denied.headers["x-ratelimit-remaining"] == "0"
    assert 0 < int(denied.headers["retry-after"]) <= 60
    assert 180 <= int(denied.headers["x-ratelimit-reset"]) <= 240
    assert denied.headers["content-type"] == "application/json"
    assert denied.json()["error"] == "rate_limited"
