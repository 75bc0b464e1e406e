"""The event flood (issue 15): the Check's throughput refusing keys, with authentication events
recorded and without — ``python -m bench.events``.

One real authz process (``python -m authz``, HTTP transport) on a real Postgres; ``wrk`` sends
checks with a revoked key (a well-formed key id, so every check is a denial that records an
event) straight to the HTTP check server, as Envoy would. Runs alternate events off
(``HOKUSAI_EVENTS_QUEUE_SIZE=0``) and on, in the same session, so drift on a shared machine hits
both; each run is at least ``--denials`` checks (100 000 by default). Reported: checks/s per mode
(median and spread over the rounds), the ratio on/off, and — the proof nothing is lost below the
queue's bound — events written (the sum of the rows' counts: identical events of one second
are one row) against denials sent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from authz.management.service import open_key_service
from authz.settings import Settings
from authz.storage.migrations import migrate
from bench import wrk
from cli.servers import PostgresServer, free_port, http_ok
from cli.stack import AuthzProcess, service_env

PATH = "/check/api/mlflow/api/2.0/mlflow/experiments/search?max_results=1"


def events_written(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT coalesce(sum(count), 0) FROM auth_events").fetchone()
    return int(row[0]) if row else 0


def one_run(
    url: str, token: str, queue: int, args: argparse.Namespace, work: Path
) -> dict[str, float]:
    port = free_port()
    env = service_env(
        Settings(bcrypt_cost=4),
        {
            "HOKUSAI_DATABASE_URL": url,
            "HOKUSAI_GRPC_PORT": str(free_port()),
            "HOKUSAI_HTTP_CHECK_PORT": str(port),
            "HOKUSAI_EVENTS_QUEUE_SIZE": str(queue),
            "HOKUSAI_LOG_LEVEL": "warning",
        },
    )
    before = events_written(url)
    authz = AuthzProcess(work / f"logs-{queue}-{time.monotonic_ns()}", env, port)
    authz.start()
    try:
        target = f"http://127.0.0.1:{port}{PATH}"
        http_ok(target)  # the first check loads the record and runs bcrypt once
        result = wrk.run(
            target,
            [[("Authorization", f"Bearer {token}")]],
            duration=args.duration,
            connections=args.connections,
            script_dir=work,
        )
    finally:
        authz.stop()  # flushes the queue last
    written = events_written(url) - before
    return {"rps": result.rps, "denials": result.requests, "written": written}


def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="hokusai-events-") as tmp:
        work = Path(tmp)
        with PostgresServer(work / "pg", fast=True) as pg:
            migrate(pg.url)
            service = open_key_service(pg.url, Settings(bcrypt_cost=4), "bench")
            view, key = service.create_key(user_email="flood@example.com", name="flood")
            service.revoke_key(view.key_id)
            runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
            for _ in range(args.rounds):
                for mode, queue in (("off", 0), ("on", args.queue)):
                    runs[mode].append(one_run(pg.url, key.token, queue, args, work))
                    print(f"events {mode}: {runs[mode][-1]}", flush=True)
    return summary(runs, args)


def summary(runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> dict[str, object]:
    rps = {mode: [r["rps"] for r in found] for mode, found in runs.items()}
    median = {mode: statistics.median(values) for mode, values in rps.items()}
    on = runs["on"]
    return {
        "rounds": args.rounds,
        "denials_per_run_min": min(r["denials"] for rs in runs.values() for r in rs),
        "rps_off_median": median["off"],
        "rps_on_median": median["on"],
        "ratio_on_off": median["on"] / median["off"],
        # noise: each mode's spread over its rounds, relative to its median
        "spread_off": (max(rps["off"]) - min(rps["off"])) / median["off"],
        "spread_on": (max(rps["on"]) - min(rps["on"])) / median["on"],
        "events_written": sum(int(r["written"]) for r in on),
        "denials_with_events_on": sum(int(r["denials"]) for r in on),
        # wrk counts the answers it read; the server also answered the warm-up check and the
        # requests in flight when wrk stopped: 0 <= written - sent <= rounds * (connections + 1)
        "written_minus_sent": sum(int(r["written"]) - int(r["denials"]) for r in on),
        "events_written_off": sum(int(r["written"]) for r in runs["off"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.events", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--denials", type=int, default=100_000, help="at least this many per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--queue", type=int, default=200_000, help="HOKUSAI_EVENTS_QUEUE_SIZE when on"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args)
    for name, value in result.items():
        print(f"{name:28} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    short = int(result["denials_per_run_min"]) < args.denials  # type: ignore[call-overload]
    if short:
        print(f"bench.events: a run sent fewer than {args.denials} denials: raise --duration")
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main())
