"""Per-key rate limits and usage through REAL Envoy (global ratelimit filter + gRPC access log:
HOKUSAI_RATE_LIMIT_ENFORCEMENT=envoy), two authz instances behind it, Redis and Postgres.

One module-scoped rig: a static upstream (``/t/…``; ``/t/status/NNN`` answers NNN), two in-thread
authz servers in Envoy's ``authz_grpc`` cluster (Check, RateLimitService and ALS all round-robin
over both), a private Redis the last test stops.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer

import psycopg
import pytest
import requests

from authz.management.service import KeyService
from authz.settings import Settings
from authz.storage.db import connector
from cli.main import main as hokusai
from cli.servers import EnvoyServer, RedisServer, free_port
from tests.support.authz import RunningAuthz, poll, running_authz
from tests.support.envoy_rig import Upstream, envoy_bootstrap


@dataclass
class Rig:
    url: str
    database_url: str
    settings: Settings
    instances: list[RunningAuthz]
    redis: RedisServer

    def key(self, per_hour: int | None, burst: int | None) -> tuple[str, str]:
        service = KeyService(connector(self.database_url), self.settings, "test:e2e")
        view, new = service.create_key(
            user_email="rl@example.com", name="rl", rate_limit_per_hour=per_hour, burst=burst
        )
        return view.key_id, new.token

    def get(self, token: str, path: str = "/t/a", method: str = "GET") -> requests.Response:
        return requests.request(
            method, self.url + path, timeout=10, headers={"authorization": f"Bearer {token}"}
        )


@pytest.fixture(scope="module")
def rig(
    tmp_path_factory: pytest.TempPathFactory, postgres_server_url: str, _template_database: str
) -> Iterator[Rig]:
    from tests.conftest import _admin, _drop_database, with_database

    name = "rl_e2e"
    with _admin(postgres_server_url) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {_template_database}")
    database_url = with_database(postgres_server_url, name)
    tmp = tmp_path_factory.mktemp("rl_e2e")
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(RedisServer(tmp / "redis"))
        settings = Settings(
            database_url=database_url,
            redis_url=redis.url,
            bcrypt_cost=4,
            pepper="p" * 32,
            usage_flush_interval=0.2,
            rate_limit_enforcement="envoy",  # the option this module covers (the default: check)
        )
        instances = [stack.enter_context(running_authz(settings)) for _ in range(2)]
        port, admin = free_port(), free_port()
        config_path = tmp / "envoy.json"
        config_path.write_text(
            json.dumps(envoy_bootstrap(port, admin, int(upstream.server_address[1]), instances))
        )
        stack.enter_context(EnvoyServer(config_path, admin, tmp / "logs"))
        yield Rig(f"http://127.0.0.1:{port}", database_url, settings, instances, redis)
    upstream.shutdown()
    upstream.server_close()
    _drop_database(postgres_server_url, name)


def test_burst_then_429_with_headers_and_json_body(rig: Rig) -> None:
    _key_id, token = rig.key(per_hour=60, burst=5)
    answers = [rig.get(token) for _ in range(8)]
    assert [a.status_code for a in answers] == [200] * 5 + [429] * 3
    assert [a.headers["x-ratelimit-remaining"] for a in answers[:5]] == ["4", "3", "2", "1", "0"]
    assert all(a.headers["x-ratelimit-limit"] == "60" for a in answers)
    denied = answers[5]
    assert denied.headers["x-ratelimit-remaining"] == "0"
    assert 0 < int(denied.headers["retry-after"]) <= 60
    assert 240 <= int(denied.headers["x-ratelimit-reset"]) <= 300
    assert denied.headers["content-type"] == "application/json"
    body = denied.json()
    assert body["error"] == "rate_limited" and body["docs"].endswith("#rate-limited")


def test_two_instances_share_the_budget(rig: Rig) -> None:
    before = [a.server.rate_limits.calls for a in rig.instances]
    _key_id, token = rig.key(per_hour=3600, burst=6)
    statuses = [rig.get(token).status_code for _ in range(12)]
    assert statuses.count(200) in (6, 7)  # 6, plus at most one refill (1/s) during the run
    assert statuses[:6] == [200] * 6
    calls = [a.server.rate_limits.calls - b for a, b in zip(rig.instances, before, strict=True)]
    assert all(c > 0 for c in calls), calls  # both instances decided for this one key


def test_usage_counts_per_endpoint_and_status(rig: Rig) -> None:
    key_id, token = rig.key(per_hour=0, burst=None)  # unlimited: no x-ratelimit-* headers
    answers = [rig.get(token, "/t/a") for _ in range(6)]
    answers += [rig.get(token, "/t/status/404?run_id=7&token=zzz") for _ in range(3)]
    answers += [rig.get(token, "/t/status/503") for _ in range(2)]
    # 403 from the Check (scope): the denial carries the key id to the access log (issue 15)
    answers += [rig.get(token, "/t/b", "POST")]
    assert [a.status_code for a in answers] == [200] * 6 + [404] * 3 + [503] * 2 + [403]
    assert "x-ratelimit-limit" not in answers[0].headers

    def stored() -> int:
        with psycopg.connect(rig.database_url) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(count), 0) FROM api_key_usage WHERE key_id = %s", (key_id,)
            ).fetchone()
        return int(row[0]) if row else 0

    poll(lambda: stored() == 12, timeout=20, interval=0.2)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert hokusai(["auth", "usage", key_id, "--json", "--database-url", rig.database_url]) == 0
    report = json.loads(out.getvalue())
    endpoints = {e["label"]: e["requests"] for e in report["endpoints"]}
    assert endpoints == {"GET /t/a": 6, "GET /t/status/:id": 5, "POST /t/b": 1}
    classes = {s["label"]: (s["requests"], s["errors"]) for s in report["status_classes"]}
    assert classes == {"2xx": (6, 0), "4xx": (4, 4), "5xx": (2, 2)}
    assert report["total"]["requests"] == 12 and report["total"]["p95_ms"] is not None
    assert sum(p["requests"] for p in report["series"]) == 12
    with psycopg.connect(rig.database_url) as conn:
        routes = [r[0] for r in conn.execute("SELECT route FROM api_key_usage").fetchall()]
    assert not any("?" in r or "zzz" in r for r in routes)


def test_redis_stopped_requests_still_authenticate(rig: Rig) -> None:
    """Last in the module: it stops the rig's Redis. Limits fail open; auth is unaffected."""
    _warm_id, warm = rig.key(per_hour=60, burst=2)
    assert rig.get(warm).status_code == 200
    _cold_id, cold = rig.key(per_hour=60, burst=2)
    rig.redis.stop()
    statuses = [rig.get(warm).status_code for _ in range(4)]
    assert statuses == [200] * 4  # over its burst of 2, but the limiter cannot count: open
    assert rig.get(cold).status_code == 200  # first use: Postgres, not Redis
    assert rig.get(warm[:-3] + "AAA").status_code == 401  # authentication never fails open
    failed_open = sum(a.server.limiter.stats.fail_open for a in rig.instances)
    assert failed_open >= 4
