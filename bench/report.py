"""The results: a table with the target ratios, as text, JSON (bench/results/) and RESULTS.md.

A ratio is taken within each round (both cells ran minutes apart at most, interleaved with the
others) and reported as the median over rounds with its spread, min–max: on a shared machine a
single run's ratio can move by 10 % between rounds, and the spread says how far to trust it.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent

# (label, numerator, denominator, target or None): every ratio is of req/s within a round.
RATIOS = [
    ("D/C gRPC", "D-grpc", "C-grpc", 0.90),
    ("D/C HTTP", "D-http", "C-http", 0.90),
    # S: ours with the default settings (make up); issue 16's targets.
    ("default/D-http (S-http/D-http)", "S-http", "D-http", 0.85),
    ("default/Envoy alone (S-http/A)", "S-http", "A", 0.55),
    # The exact (lease) limiter against the approximate one, both in the Check with usage.
    ("exact/approximate HTTP (E-exact/E-approx)", "E-exact-http", "E-approx-http", 0.95),
    ("exact/approximate gRPC (E-exact/E-approx)", "E-exact-grpc", "E-approx-grpc", 0.95),
    # E: D + per-key limit + usage (issue 7's target against the bare floor).
    ("E/C gRPC (in-Check exact + usage)", "E-exact-grpc", "C-grpc", 0.80),
    ("E/C HTTP (in-Check exact + usage)", "E-exact-http", "C-http", 0.80),
    ("L/D HTTP (cost of in-Check exact limits)", "L-http", "D-http", None),
    ("E/L HTTP (cost of the usage access log)", "E-exact-http", "L-http", None),
    ("E-envoy/E-exact HTTP (cost of enforcement=envoy)", "E-envoy-http", "E-exact-http", None),
    ("D/A gRPC", "D-grpc", "A", None),
    ("D/A HTTP (HTTP full/A)", "D-http", "A", 0.45),
    ("HTTP full/C-http", "D-http", "C-http", 0.85),
    ("F/D gRPC", "F-grpc", "D-grpc", 1.0),
    ("F/D HTTP", "F-http", "D-http", 1.0),
    ("B/A", "B", "A", None),
    ("G(ours)/G(basic-auth)", "G-ours", "G-basic", 2.0),
]

# (label, cell, baseline): CPU per request that one feature adds (medians, µs).
COSTS = [
    ("in-Check exact limits", "L-http", "D-http"),
    ("usage: the gRPC access log", "E-exact-http", "L-http"),
    ("enforcement=envoy instead of the Check", "E-envoy-http", "E-exact-http"),
    ("default settings over E-exact-http", "S-http", "E-exact-http"),
]


@dataclass
class Results:
    started: float
    seconds: float
    duration: float
    rounds: int
    connections: int
    cells: dict[str, dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)
    rounds_rps: dict[str, list[float]] = field(default_factory=dict)  # req/s of each round
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at the start and the end
    command: str = "python -m bench"  # how it was run (a subset says so in RESULTS.md)

    def ratios(self) -> list[dict[str, Any]]:
        out = []
        for label, num, den, target in RATIOS:
            per_round = _per_round(self.rounds_rps.get(num, []), self.rounds_rps.get(den, []))
            if not per_round:
                continue
            value = statistics.median(per_round)
            out.append(
                {
                    "ratio": label,
                    "value": round(value, 3),
                    "low": round(min(per_round), 3),
                    "high": round(max(per_round), 3),
                    "target": target,
                    "met": None if target is None else value >= target,
                }
            )
        return out

    def costs(self) -> list[dict[str, Any]]:
        out = []
        for label, cell, base in COSTS:
            a, b = self.cells.get(cell, {}), self.cells.get(base, {})
            if "checker_cpu_us" not in a or "checker_cpu_us" not in b:
                continue
            out.append(
                {
                    "cost": f"{label} ({cell} − {base})",
                    "checker_cpu_us": round(a["checker_cpu_us"] - b["checker_cpu_us"], 1),
                    "envoy_cpu_us": round(a["envoy_cpu_us"] - b["envoy_cpu_us"], 1),
                }
            )
        return out


def _per_round(num: list[float], den: list[float]) -> list[float]:
    return [a / b for a, b in zip(num, den, strict=False) if b]


def table(results: Results) -> str:
    lines = [
        f"wrk -t1 -c{results.connections}, Envoy --concurrency 1, {results.rounds} rounds × "
        f"{results.duration:g} s, medians (min–max over rounds); {platform.node()} "
        f"({_cpus()} CPUs), load average {results.load[0]:.1f} at the start, "
        f"{results.load[1]:.1f} at the end",
        "",
        "| cell | what | req/s | min–max | p50 ms | p99 ms | checker CPU µs/req | "
        "Envoy CPU µs/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, cell in results.cells.items():
        if "rps" not in cell:
            continue
        rps = results.rounds_rps.get(name) or [cell["rps"]]
        lines.append(
            f"| {name} | {cell['what']} | {cell['rps']:.0f} | {min(rps):.0f}–{max(rps):.0f} | "
            f"{cell['p50_ms']:.2f} | {cell['p99_ms']:.2f} | {_cpu(cell['checker_cpu_us'])} | "
            f"{_cpu(cell['envoy_cpu_us'])} |"
        )
    lines += [
        "",
        "| ratio (req/s, per round) | median | min–max | target | met |",
        "|---|---:|---:|---:|---|",
    ]
    for ratio in results.ratios():
        target = "" if ratio["target"] is None else f"≥ {ratio['target']:g}"
        met = "" if ratio["met"] is None else ("yes" if ratio["met"] else "**no**")
        lines.append(
            f"| {ratio['ratio']} | {ratio['value']:.2f} | {ratio['low']:.2f}–{ratio['high']:.2f} "
            f"| {target} | {met} |"
        )
    costs = results.costs()
    if costs:
        lines += ["", "| what it costs (CPU per request, medians) | authz µs | Envoy µs |"]
        lines.append("|---|---:|---:|")
        lines += [
            f"| {c['cost']} | {c['checker_cpu_us']:+.1f} | {c['envoy_cpu_us']:+.1f} |"
            for c in costs
        ]
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
    data = {**asdict(results), "ratios": results.ratios(), "costs": results.costs()}
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(results.started))
    target = BENCH_DIR / "results" / f"{stamp}.json"
    target.parent.mkdir(exist_ok=True)
    for path in (target, json_path):
        if path is not None:
            path.write_text(json.dumps(data, indent=2) + "\n")
    if write_markdown:
        (BENCH_DIR / "RESULTS.md").write_text(
            f"# Latest benchmark results\n\nMade by `{results.command}` on "
            f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(results.started))}, "
            f"{results.seconds:.0f} s in all.\n\n" + table(results) + "\n"
        )
    return target
