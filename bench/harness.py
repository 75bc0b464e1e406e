"""``python -m bench``: every configuration under the same wrk load, interleaved, medians of rounds.

Round r runs A, B, C-grpc, C-http, D-grpc, D-http, L-http, E-exact/E-approx (gRPC, HTTP),
E-envoy-http, S-http, F-grpc, F-http, G-ours, G-basic-auth in that order (``--cells`` picks a
subset), so slow drift of a noisy machine spreads over every cell alike; each ratio is taken
within a round and reported as the median of the rounds with their spread (min–max). CPU per
request is read from /proc (utime + stime) of the process that answers Check (the floor or authz)
and of Envoy. Each cell starts on a quiet machine (``wait_quiet``): a slow server — MLflow's
basic-auth app answers 5 req/s — is still working off wrk's queued requests when wrk stops, and
the cell after it (Envoy alone, the next round's first) measured 16–19k req/s instead of 22–23k.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from bench import report, wrk
from bench.stack import BASIC_AUTH_USER, LIMIT_ENVOYS, BenchStack, basic_header

CHECK_PATH = "/api/mlflow/api/2.0/mlflow/experiments/get?experiment_id=0"
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=10"
Headers = Sequence[tuple[str, str]]


@dataclass
class Cell:
    name: str
    what: str
    url: str
    header_sets: list[Headers]
    checker_pid: Callable[[], int | None]
    envoy_pid: Callable[[], int | None]
    allowed: bool = True
    samples: list[dict[str, float]] = field(default_factory=list)


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


_TICKS = 100.0
QUIET_BUSY = 0.15  # a machine at most this busy (all CPUs) is quiet
QUIET_SAMPLE = 0.2  # seconds per look
QUIET_MAX_WAIT = 20.0  # then measure anyway (a daemon that never rests must not hang the run)


def cpu_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])
    return total - idle, total


def busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of CPU time spent busy between two ``cpu_busy_ticks`` readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


def wait_quiet(
    read: Callable[[], tuple[int, int]] = cpu_busy_ticks,
    sleep: Callable[[float], None] = time.sleep,
    max_looks: int = int(QUIET_MAX_WAIT / QUIET_SAMPLE),
) -> int:
    """Wait until the machine is quiet (two looks in a row at most ``QUIET_BUSY`` busy), bounded
    in looks; how many looks it took."""
    quiet, previous = 0, read()
    for look in range(1, max_looks + 1):
        sleep(QUIET_SAMPLE)
        current = read()
        quiet = quiet + 1 if busy_fraction(previous, current) <= QUIET_BUSY else 0
        previous = current
        if quiet >= 2:
            return look
    return max_looks


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def build_cells(stack: BenchStack) -> list[Cell]:
    creds, envoys = stack.creds, stack.envoys
    pids = stack.pids

    def url(name: str, path: str = CHECK_PATH) -> str:
        return f"http://127.0.0.1:{envoys[name].port}{path}"

    def envoy(name: str) -> Callable[[], int | None]:
        return lambda: envoys[name].server.pid

    def checker(name: str) -> Callable[[], int | None]:
        return lambda: pids()[name]

    bearer = [("Authorization", f"Bearer {creds.valid}")]
    denials: list[Headers] = [
        [("Authorization", f"Bearer {t}")]
        for t in (creds.unknown, creds.wrong_secret, creds.revoked)
    ]
    none: Callable[[], int | None] = lambda: None  # noqa: E731
    cells = [
        Cell("A", "Envoy alone", url("A"), [[]], none, envoy("A")),
        Cell(
            "B",
            "Envoy api_key_auth, 1000 keys",
            url("B"),
            [[("X-API-Key", creds.native[NATIVE_PICK])]],
            none,
            envoy("B"),
        ),
        Cell(
            "C-grpc",
            "floor: grpc.aio dict lookup",
            url("C-grpc"),
            [bearer],
            checker("floor-grpc"),
            envoy("C-grpc"),
        ),
        Cell(
            "C-http",
            "floor: asyncio HTTP dict lookup",
            url("C-http"),
            [bearer],
            checker("floor-http"),
            envoy("C-http"),
        ),
        Cell(
            "D-grpc",
            "authz gRPC, warm, all features",
            url("D-grpc"),
            [bearer],
            checker("authz"),
            envoy("D-grpc"),
        ),
        Cell(
            "D-http",
            "authz HTTP, warm, all features",
            url("D-http"),
            [bearer],
            checker("authz"),
            envoy("D-http"),
        ),
        *limit_cells(url, envoy, checker, bearer),
        Cell(
            "S-http",
            "ours, default settings (make up: in-Check exact limits, access logs, shield)",
            url("S-http"),
            [bearer],
            checker("authz-default"),
            envoy("S-http"),
        ),
        Cell(
            "F-grpc",
            "denials (unknown, wrong secret, revoked) gRPC",
            url("D-grpc"),
            denials,
            checker("authz"),
            envoy("D-grpc"),
            allowed=False,
        ),
        Cell(
            "F-http",
            "denials (unknown, wrong secret, revoked) HTTP",
            url("D-http"),
            denials,
            checker("authz"),
            envoy("D-http"),
            allowed=False,
        ),
    ]
    if stack.with_mlflow:
        cells += [
            Cell(
                "G-ours",
                "MLflow experiments/search via gateway",
                url("G-ours", "/api/mlflow" + SEARCH),
                [bearer],
                checker("authz"),
                envoy("G-ours"),
            ),
            Cell(
                "G-basic",
                "MLflow experiments/search, basic-auth app",
                stack.basic_auth_url + SEARCH,
                [[("Authorization", basic_header(BASIC_AUTH_USER, stack.basic_password))]],
                none,
                none,
            ),
        ]
    return cells


NATIVE_PICK = 500
LIMIT_WHAT = {
    "L-http": "authz http, + in-Check exact (lease) rate limit, no usage log",
    "E-exact-grpc": "authz grpc, + in-Check exact (lease) rate limit + gRPC access log",
    "E-exact-http": "authz http, + in-Check exact (lease) rate limit + gRPC access log",
    "E-approx-grpc": "authz grpc, + in-Check approximate rate limit + gRPC access log",
    "E-approx-http": "authz http, + in-Check approximate rate limit + gRPC access log",
    "E-envoy-http": "authz http, + Envoy global rate limit (exact) + gRPC access log",
}


def limit_cells(
    url: Callable[[str], str],
    envoy: Callable[[str], Callable[[], int | None]],
    checker: Callable[[str], Callable[[], int | None]],
    bearer: Headers,
) -> list[Cell]:
    """D plus per-key limits (and usage): the limiters and where they are enforced."""
    return [
        Cell(name, LIMIT_WHAT[name], url(name), [bearer], checker(f"authz-{variant}"), envoy(name))
        for name, variant, _transport, _log in LIMIT_ENVOYS
    ]


def probe(cell: Cell) -> str | None:
    """One request per header set before measuring: the status must be the expected kind."""
    for headers in cell.header_sets:
        request = urllib.request.Request(cell.url, headers=dict(headers))
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError as exc:
            return f"{cell.name}: request failed: {type(exc).__name__}"
        if (200 <= status < 300) != cell.allowed:
            return f"{cell.name}: unexpected status {status}"
    return None


def measure(cell: Cell, duration: float, connections: int, work: Path) -> dict[str, float]:
    checker_pid, envoy_pid = cell.checker_pid(), cell.envoy_pid()
    cpu0, env0 = cpu_seconds(checker_pid), cpu_seconds(envoy_pid)
    result = wrk.run(
        cell.url, cell.header_sets, duration=duration, connections=connections, script_dir=work
    )
    requests = max(result.requests, 1)
    return {
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "checker_cpu_us": (cpu_seconds(checker_pid) - cpu0) * 1e6 / requests,
        "envoy_cpu_us": (cpu_seconds(envoy_pid) - env0) * 1e6 / requests,
        "requests": result.requests,
        "unexpected": result.errors
        + (result.non2xx if cell.allowed else result.requests - result.non2xx),
    }


def medians(cell: Cell) -> dict[str, float]:
    if not cell.samples:
        return {}
    return {k: statistics.median(s[k] for s in cell.samples) for k in cell.samples[0]}


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 s cells, 1 round, no MLflow: proves the harness runs",
    )
    parser.add_argument("--no-mlflow", action="store_true", help="skip G")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--cells", help="comma-separated cell name prefixes to run (e.g. C,D,E)")
    parser.add_argument(
        "--no-results-md", action="store_true", help="do not rewrite bench/RESULTS.md"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.rounds, args.no_mlflow, args.no_results_md = 1.0, 1, True, True
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1")
    return args


def run_rounds(cells: list[Cell], args: argparse.Namespace, work: Path) -> None:
    if not args.smoke:
        for cell in cells:  # warm-up: caches, connection pools, JIT-free but page-cache warm
            wrk.run(
                cell.url,
                cell.header_sets,
                duration=1,
                connections=args.connections,
                script_dir=work,
            )
    for round_no in range(1, args.rounds + 1):
        for cell in cells:
            if not args.smoke:  # the smoke run proves the harness runs, on a busy test machine
                wait_quiet()
            sample = measure(cell, args.duration, args.connections, work)
            cell.samples.append(sample)
            print(
                f"  round {round_no}/{args.rounds} {cell.name:8} {sample['rps']:9.0f} req/s "
                f"p99 {sample['p99_ms']:6.2f} ms",
                flush=True,
            )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    wrk.ensure_wrk()
    started, load_start = time.time(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="hokusai-bench-") as tmp:
        work = Path(tmp)
        print(
            "bench: starting Postgres, Redis, authz, floors, Envoys"
            + ("" if args.no_mlflow else ", MLflow ×2"),
            flush=True,
        )
        with BenchStack(work, with_mlflow=not args.no_mlflow) as stack:
            cells = build_cells(stack)
            if args.cells:
                wanted = tuple(p.strip() for p in args.cells.split(",") if p.strip())
                cells = [c for c in cells if c.name.startswith(wanted)]
            problems = [p for p in map(probe, cells) if p]
            if any(p.startswith("G-") for p in problems):  # MLflow is a peer, not our path
                print("bench: G skipped: " + "; ".join(problems), file=sys.stderr)
                cells = [c for c in cells if not c.name.startswith("G-")]
                problems = [p for p in problems if not p.startswith("G-")]
            if problems:
                print("bench: " + "; ".join(problems), file=sys.stderr)
                return 1
            run_rounds(cells, args, work)
            memory = {"authz_rss_mb": rss_mb(stack.pids()["authz"])}
    results = report.Results(
        started=started,
        seconds=time.time() - started,
        duration=args.duration,
        rounds=args.rounds,
        connections=args.connections,
        cells={c.name: {"what": c.what, **medians(c)} for c in cells},
        extra=memory,
        rounds_rps={c.name: [s["rps"] for s in c.samples] for c in cells},
        load=(load_start, os.getloadavg()[0]),
        command=" ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)]),
    )
    print(report.table(results))
    path = report.save(results, args.json, write_markdown=not args.no_results_md)
    print(f"bench: results in {path}")
    return 0
