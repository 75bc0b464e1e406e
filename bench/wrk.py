"""``wrk``: installed from Debian when missing, driven with a Lua script that reports exact
percentiles as one JSON line (wrk's own text rounds them)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPORT = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"non2xx":%d,"errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


class WrkError(RuntimeError):
    pass


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str:
    """The wrk binary; ``apt-get install -y wrk`` (after ``apt-get update`` if needed) if absent."""
    found = shutil.which("wrk")
    if found:
        return found
    for argv in (
        ["apt-get", "install", "-y", "wrk"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "wrk"],
    ):
        print(f"bench: wrk is missing; running: {' '.join(argv)}", flush=True)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        if argv[1] == "install" and result.returncode == 0:
            break
    found = shutil.which("wrk")
    if not found:
        raise WrkError("wrk is not installed and apt-get could not install it")
    return found


def _lua(header_sets: Sequence[Sequence[tuple[str, str]]]) -> str:
    """One fixed request (pre-built by wrk), or a rotation through several header sets."""
    if len(header_sets) == 1:
        sets = "".join(
            f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in header_sets[0]
        )
        return sets + REPORT
    tables = ",\n".join(
        "{" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers) + "}"
        for headers in header_sets
    )
    return (
        f"local variants = {{\n{tables}\n}}\nlocal i = 0\n"
        "request = function()\n  i = i % #variants + 1\n"
        "  return wrk.format(nil, nil, variants[i])\nend\n" + REPORT
    )


def run(
    url: str,
    header_sets: Sequence[Sequence[tuple[str, str]]],
    *,
    duration: float,
    connections: int,
    script_dir: Path,
    timeout_s: float = 5.0,
) -> WrkResult:
    """``wrk -t1 -c<connections> -d<duration>`` against ``url``; raises WrkError if it fails."""
    script = script_dir / "wrk.lua"
    script.write_text(_lua(header_sets or [[]]))
    script.chmod(0o600)  # holds bench credentials
    argv = [
        ensure_wrk(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(script),
        url,
    ]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if result.returncode != 0 or line is None:
        raise WrkError(f"wrk failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    data = json.loads(line[6:])
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        non2xx=data["non2xx"],
        errors=data["errors"],
    )
