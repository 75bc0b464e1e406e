"""The results: a table with the target ratios, as text, JSON (bench/results/) and RESULTS.md."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent

# (label, numerator, denominator, target or None): every ratio is of median req/s.
RATIOS = [
    ("D/C gRPC", "D-grpc", "C-grpc", 0.90),
    ("D/C HTTP", "D-http", "C-http", 0.90),
    # E: D + per-key rate limit + usage (gRPC access log); E1 Envoy filter exact, E2 Envoy filter
    # approximate, E3 in-Check approximate (bench/stack.py E_VARIANTS).
    ("E1/C gRPC (Envoy RL, exact)", "E1-grpc", "C-grpc", 0.80),
    ("E1/C HTTP (Envoy RL, exact)", "E1-http", "C-http", 0.80),
    ("E2/C gRPC (Envoy RL, approx.)", "E2-grpc", "C-grpc", 0.80),
    ("E2/C HTTP (Envoy RL, approx.)", "E2-http", "C-http", 0.80),
    ("E3/C gRPC (in-Check, approx.)", "E3-grpc", "C-grpc", 0.80),
    ("E3/C HTTP (in-Check, approx.)", "E3-http", "C-http", 0.80),
    ("E3/D HTTP (cost of limits+usage)", "E3-http", "D-http", None),
    ("D/A gRPC", "D-grpc", "A", None),
    ("D/A HTTP (HTTP full/A)", "D-http", "A", 0.45),
    ("HTTP full/C-http", "D-http", "C-http", 0.85),
    ("F/D gRPC", "F-grpc", "D-grpc", 1.0),
    ("F/D HTTP", "F-http", "D-http", 1.0),
    ("B/A", "B", "A", None),
    ("G(ours)/G(basic-auth)", "G-ours", "G-basic", 2.0),
]


@dataclass
class Results:
    started: float
    seconds: float
    duration: float
    rounds: int
    connections: int
    cells: dict[str, dict[str, Any]]
    e_built: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def ratios(self) -> list[dict[str, Any]]:
        out = []
        for label, num, den, target in RATIOS:
            a, b = self.cells.get(num, {}), self.cells.get(den, {})
            if "rps" not in a or not b.get("rps"):
                continue
            value = a["rps"] / b["rps"]
            out.append(
                {
                    "ratio": label,
                    "value": round(value, 3),
                    "target": target,
                    "met": None if target is None else value >= target,
                }
            )
        return out


def table(results: Results) -> str:
    lines = [
        f"wrk -t1 -c{results.connections}, Envoy --concurrency 1, {results.rounds} rounds × "
        f"{results.duration:g} s, medians; {platform.node()} ({_cpus()} CPUs)",
        "",
        "| cell | what | req/s | p50 ms | p99 ms | checker CPU µs/req | Envoy CPU µs/req |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, cell in results.cells.items():
        if "rps" not in cell:
            continue
        lines.append(
            f"| {name} | {cell['what']} | {cell['rps']:.0f} | {cell['p50_ms']:.2f} | "
            f"{cell['p99_ms']:.2f} | {_cpu(cell['checker_cpu_us'])} | "
            f"{_cpu(cell['envoy_cpu_us'])} |"
        )
    if not results.e_built:
        lines.append("| E | D + per-key rate limit + usage log | not measured yet | | | | |")
    lines += ["", "| ratio (req/s) | value | target | met |", "|---|---:|---:|---|"]
    for ratio in results.ratios():
        target = "" if ratio["target"] is None else f"≥ {ratio['target']:g}"
        met = "" if ratio["met"] is None else ("yes" if ratio["met"] else "**no**")
        lines.append(f"| {ratio['ratio']} | {ratio['value']:.2f} | {target} | {met} |")
    bad = [n for n, c in results.cells.items() if c.get("unexpected")]
    if bad:
        lines.append(f"\nWARNING: unexpected statuses or socket errors in {', '.join(bad)}")
    if results.extra:
        lines.append("\n" + ", ".join(f"{k} {v:.0f}" for k, v in results.extra.items()))
    return "\n".join(lines)


def _cpu(value: float) -> str:
    return f"{value:.0f}" if value else "–"


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def save(results: Results, json_path: Path | None, *, write_markdown: bool) -> Path:
    data = {**asdict(results), "ratios": results.ratios()}
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(results.started))
    target = BENCH_DIR / "results" / f"{stamp}.json"
    target.parent.mkdir(exist_ok=True)
    for path in (target, json_path):
        if path is not None:
            path.write_text(json.dumps(data, indent=2) + "\n")
    if write_markdown:
        (BENCH_DIR / "RESULTS.md").write_text(
            "# Latest benchmark results\n\nMade by `make bench` (`python -m bench`) on "
            f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(results.started))}, "
            f"{results.seconds:.0f} s in all.\n\n" + table(results) + "\n"
        )
    return target
