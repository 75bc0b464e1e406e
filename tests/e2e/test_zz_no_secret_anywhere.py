"""Last of the suite (by name): after all the end-to-end traffic, no key secret sits in any log
file of the stack, any Redis value or any database row (TESTPLAN "Bad inputs", last row).

The authentication-event tables (issue 15) are among those swept, and must hold rows by then.

Looks for every key this test process generated (their secret part) and for anything shaped like
a whole key (keys made by subprocesses: the CLI, the keys API)."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import redis

from authz.keys.format import KEY_PATTERN
from cli.servers import MlflowServer
from tests.e2e.conftest import GENERATED, Gateway

WHOLE_KEY = re.compile(KEY_PATTERN)


def secrets_in(text: str) -> list[str]:
    found = [token[:20] + "…" for token in GENERATED if token[21:64] in text]
    found += [m[:20] + "…" for m in WHOLE_KEY.findall(text)]
    return found


def log_files(gateways: dict[str, Gateway], mlflow: MlflowServer) -> list[Path]:
    roots = [g.data_dir for g in gateways.values()] + [mlflow.log_dir]
    return [p for root in roots for p in root.rglob("*.log") if p.is_file()]


def test_no_key_secret_in_logs_redis_or_database(
    gateways: dict[str, Gateway],
    mlflow_server: MlflowServer,
    e2e_redis_url: str,
    e2e_database_url: str,
) -> None:
    assert GENERATED, "the end-to-end tests made keys"
    files = log_files(gateways, mlflow_server)
    assert any(p.name == "authz.log" for p in files)
    assert any(p.name == "envoy.log" for p in files)
    for path in files:
        assert not secrets_in(path.read_text(errors="replace")), path

    client = redis.Redis.from_url(e2e_redis_url, decode_responses=False)
    for name in client.scan_iter(count=1000):
        value = client.get(name) if client.type(name) == b"string" else client.dump(name)
        raw = bytes(name) + bytes(value or b"")  # type: ignore[arg-type]
        assert not secrets_in(raw.decode(errors="replace")), name

    with psycopg.connect(e2e_database_url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        ]
        # Issue 15's tables are swept like the others; the events table has the suite's denials.
        assert {"auth_events", "key_policy", "webhook_deliveries"} <= set(tables)
        swept: dict[str, int] = {}
        for table in tables:
            rows = conn.execute(f'SELECT row_to_json(t)::text FROM "{table}" t').fetchall()
            swept[table] = len(rows)
            for (row,) in rows:
                assert not secrets_in(row), table
        assert swept["auth_events"] > 0, "the end-to-end tests recorded refused keys"
