"""The benchmark harness runs end to end (smoke mode: 1 s cells, one round, no MLflow) and the
in-process microbenchmarks run. Nothing here asserts on timings."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from authz.settings import Settings
from bench import micro

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make bench does)")
def test_harness_smoke_runs_every_cell(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    data = json.loads(out.read_text())
    cells = data["cells"]
    assert {"A", "B", "C-grpc", "C-http", "D-grpc", "D-http", "F-grpc", "F-http"} <= set(cells)
    assert {"L-http", "E-envoy-http", "S-http"} <= set(cells)  # S: ours, default settings
    assert {f"E-{m}-{t}" for m in ("exact", "approx") for t in ("grpc", "http")} <= set(cells)
    for name, cell in cells.items():
        assert cell["requests"] > 0, name
        assert cell["unexpected"] == 0, (name, cell)  # allowed cells 2xx, F cells all denied
    ratios = {r["ratio"]: r for r in data["ratios"]}
    assert {"D/C gRPC", "D/C HTTP", "F/D gRPC", "default/D-http (S-http/D-http)"} <= set(ratios)
    assert all(r["low"] <= r["value"] <= r["high"] for r in ratios.values())  # the spread
    assert "| D-http |" in result.stdout


def test_micro_warm_checks_run() -> None:
    results = asyncio.run(micro.warm(Settings()))
    assert results["warm_grpc_check_us"] > 0
    assert results["warm_http_check_us"] > 0
    assert results["warm_http_check_in_check_limit_us"] > 0
