"""The exact limit as shipped, end to end: the default settings (HOKUSAI_RATE_LIMIT_ENFORCEMENT=
check, HOKUSAI_RATE_LIMIT_MODE=exact: the lease limiter) in two authz instances sharing one Redis,
both behind a REAL Envoy (gRPC ext_authz, requests spread over both), driven concurrently well
past a key's limit: admissions never exceed B + R·t over any window t. (A Check that times out on
a loaded machine is Envoy's 503: not an admission, so it cannot break the bound.)

The lease tests prove the bound in process (tests/unit/test_leases.py,
tests/integration/test_leases_redis.py); this one proves the wiring — settings, the Check's
phase 8, Envoy, two processes' pools on one Redis bucket. A decision happens somewhere between a
request's send and the arrival of its answer, so the check is: admitted requests sent at or after
``a`` and answered by ``b`` number at most ``B + R·(b − a)`` (implied by the bound, whatever the
network's delays). No wall-clock assertion: the load is bounded in time and count.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from authz.management.service import KeyService
from authz.ratelimit.leases import LeaseLimiter
from authz.settings import Settings
from authz.storage.db import connector
from cli.servers import EnvoyServer, free_port
from tests.support.authz import RunningAuthz, running_authz
from tests.support.envoy_rig import Upstream, envoy_bootstrap

PER_HOUR, BURST = 36_000, 16  # R = 10/s; a burst of 16 is leased (⌊B/8⌋ = 2 per instance)
CLIENTS, SECONDS, MAX_REQUESTS = 4, 3.0, 4000


@dataclass(frozen=True)
class Answer:
    sent: float
    received: float
    status: int


@pytest.fixture
def two_instances(
    tmp_path: Path, database_url: str, redis_url: str
) -> Iterator[tuple[str, list[RunningAuthz], KeyService]]:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    settings = Settings(database_url=database_url, redis_url=redis_url, bcrypt_cost=4)
    assert (settings.rate_limit_enforcement, settings.rate_limit_mode) == ("check", "exact")
    with contextlib.ExitStack() as stack:
        instances = [stack.enter_context(running_authz(settings)) for _ in range(2)]
        port, admin = free_port(), free_port()
        config = envoy_bootstrap(
            port, admin, int(upstream.server_address[1]), instances, rate_limit=False
        )
        path = tmp_path / "envoy.json"
        path.write_text(json.dumps(config))
        stack.enter_context(EnvoyServer(path, admin, tmp_path / "logs"))
        yield (
            f"http://127.0.0.1:{port}/t/exact",
            instances,
            KeyService(connector(database_url), settings, "test:e2e"),
        )
    upstream.shutdown()
    upstream.server_close()


def drive(url: str, token: str) -> list[Answer]:
    """CLIENTS threads, each sending back to back until SECONDS pass (or MAX_REQUESTS in all)."""
    answers: list[Answer] = []
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS

    def client() -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}"}
        while time.monotonic() < deadline and len(answers) < MAX_REQUESTS:
            sent = time.monotonic()
            status = session.get(url, headers=headers, timeout=5).status_code
            with lock:
                answers.append(Answer(sent, time.monotonic(), status))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 30)
    return answers


def worst_excess(admitted: list[Answer], burst: int, per_second: float) -> float:
    """max over a ≤ b of (admissions sent ≥ a and answered ≤ b) − (B + R·(b − a)); ≤ 0 when the
    limit held. a ranges over send times, b over answer times."""
    by_sent = sorted(admitted, key=lambda a: a.sent)
    worst = float("-inf")
    for i, first in enumerate(by_sent):
        inside = sorted(a.received for a in by_sent[i:])  # sent at or after first.sent
        for count, end in enumerate(inside, start=1):
            if end >= first.sent:
                worst = max(worst, count - (burst + per_second * (end - first.sent)))
    return worst


def test_two_instances_never_exceed_the_limit(
    two_instances: tuple[str, list[RunningAuthz], KeyService],
) -> None:
    url, instances, keys = two_instances
    _, key = keys.create_key(
        user_email="exact@example.com", name="exact", rate_limit_per_hour=PER_HOUR, burst=BURST
    )
    answers = drive(url, key.token)
    admitted = [a for a in answers if a.status == 200]
    # 503: Envoy's Check timed out (a loaded machine, authz in this process): never admitted.
    assert {a.status for a in answers} <= {200, 429, 503}, sorted({a.status for a in answers})
    assert len(answers) > 2 * (BURST + PER_HOUR / 3600 * SECONDS)  # well past the limit
    assert worst_excess(admitted, BURST, PER_HOUR / 3600) <= 0
    timed_out = sum(a.status == 503 for a in answers)  # may have spent a token unseen
    assert len(admitted) + timed_out >= BURST  # the burst at least: under-admission is bounded
    leasing = [i.server.limiter for i in instances if isinstance(i.server.limiter, LeaseLimiter)]
    assert len(leasing) == 2 and all(limiter.leases.calls > 0 for limiter in leasing)  # both
