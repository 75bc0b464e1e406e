"""Usage rollups: aggregation, additive flushes into a real Postgres, percentiles, pruning."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from authz.storage.usage import prune
from authz.usage.reports import report
from authz.usage.rollups import BUCKET_BOUNDS_MS, UsageAggregator, UsageEvent, normalise_path

NOW = datetime.now(UTC).timestamp()
ROUTE = "/api/mlflow/api/2.0/mlflow/experiments/search"


def events(
    key_id: str, n: int, status: int, latency: float, route: str = ROUTE
) -> list[UsageEvent]:
    return [UsageEvent(key_id, NOW, route, "GET", status, latency) for _ in range(n)]


def bucket_around(value: float) -> tuple[float, float]:
    bounds = (0.0, *BUCKET_BOUNDS_MS)
    index = next(i for i, b in enumerate(BUCKET_BOUNDS_MS) if value <= b)
    return bounds[index], bounds[index + 1]


def test_flushes_add_to_existing_rows(database_url: str) -> None:
    usage = UsageAggregator(database_url)
    for event in events("keyA", 3, 200, 4.0) + events("keyA", 2, 503, 40.0):
        usage.record(event)
    assert asyncio.run(usage.flush()) == 2  # two status classes, one minute, one route
    for event in events("keyA", 4, 200, 6.0):
        usage.record(event)
    asyncio.run(usage.flush())  # a second flush in the same minute adds, never overwrites
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT status_class, count, errors, latency_sum_ms, latency_max_ms, "
            "latency_buckets FROM api_key_usage ORDER BY status_class"
        ).fetchall()
    (c2, n2, e2, s2, m2, b2), (c5, n5, e5, _s5, m5, _b5) = rows
    assert (c2, n2, e2, s2, m2) == (2, 7, 0, 36.0, 6.0)
    assert sum(b2) == 7
    assert (c5, n5, e5, m5) == (5, 2, 2, 40.0)


def test_p95_within_its_bucket(database_url: str) -> None:
    rng = random.Random(5)
    latencies = [rng.lognormvariate(2.5, 0.8) for _ in range(2000)]
    usage = UsageAggregator(database_url)
    for ms in latencies:
        usage.record(UsageEvent("keyB", NOW, ROUTE, "POST", 200, ms))
    asyncio.run(usage.flush())
    with psycopg.connect(database_url) as conn:
        (total,) = report(conn, "keyB", datetime.now(UTC) - timedelta(hours=1), "total")
    true_p95 = sorted(latencies)[int(0.95 * len(latencies)) - 1]
    low, high = bucket_around(true_p95)
    assert total.count == 2000
    assert total.p95 is not None and low <= total.p95 <= high


def test_failed_flush_keeps_rollups(database_url: str) -> None:
    broken = UsageAggregator("postgresql://127.0.0.1:1/nothing", timeout=1)
    for event in events("keyC", 5, 200, 1.0):
        broken.record(event)
    assert asyncio.run(broken.flush()) == 0
    assert broken.pending == 1


def test_report_groups_and_prune(database_url: str) -> None:
    usage = UsageAggregator(database_url)
    for event in (
        events("keyD", 5, 200, 2.0)
        + events("keyD", 3, 404, 2.0, "/api/mlflow/other")
        + events("keyE", 1, 200, 2.0)
    ):
        usage.record(event)
    usage.record(UsageEvent("keyD", NOW - 40 * 86400, ROUTE, "GET", 200, 1.0))
    asyncio.run(usage.flush())
    since = datetime.now(UTC) - timedelta(days=1)
    with psycopg.connect(database_url) as conn:
        endpoints = {r.label: r.count for r in report(conn, "keyD", since, "endpoint")}
        statuses = {r.label: (r.count, r.errors) for r in report(conn, "keyD", since, "status")}
        keys = [(r.label, r.count) for r in report(conn, None, since, "key")]
        assert prune(conn, timedelta(days=30)) == 1
    assert endpoints == {f"GET {ROUTE}": 5, "GET /api/mlflow/other": 3}
    assert statuses == {"2xx": (5, 0), "4xx": (3, 3)}
    assert keys == [("keyD", 8), ("keyE", 1)]


@pytest.mark.parametrize(
    ("path", "route"),
    [
        (
            "/api/mlflow/api/2.0/mlflow/runs/get?run_id=abc&api_key=hk_live_x",
            "/api/mlflow/api/2.0/mlflow/runs/get",
        ),
        (
            "/api/mlflow/ajax-api/2.0/mlflow/experiments/123",
            "/api/mlflow/ajax-api/2.0/mlflow/experiments/:id",
        ),
        ("/x/0123456789abcdef0123456789abcdef/y", "/x/:id/y"),
        ("", "/"),
    ],
)
def test_route_never_keeps_the_query(path: str, route: str) -> None:
    assert normalise_path(path) == route
