"""The README's first screen, executed: `hokusai gateway up` on a fresh data directory (what
`make up` runs), `gateway status`, then the Quickstart's shell lines, Python, curl and JavaScript
fetch exactly as written; then SIGTERM, after which no process of the stack may remain."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from authz.keys.format import KEY_PATTERN
from cli.servers import free_port
from tests.support.authz import poll

ROOT = Path(__file__).resolve().parents[2]
HOKUSAI = str(Path(sys.executable).with_name("hokusai"))
Stack = tuple[subprocess.Popen[str], Path, str]  # the `gateway up` process, data dir, output


def quickstart_blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(console|python|javascript)\n(.*?)```", section, re.S)


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("readme") / "hokusai"
    out = data_dir.parent / "up.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOKUSAI_")}
    env["HOKUSAI_DATA_DIR"] = str(data_dir)
    env["HOKUSAI_BCRYPT_COST"] = "6"
    with out.open("w") as sink:
        up = subprocess.Popen(
            [
                HOKUSAI,
                "gateway",
                "up",
                "--https-port",
                str(free_port()),
                "--http-port",
                str(free_port()),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            cwd=ROOT,
        )
    try:
        poll(lambda: "ready" in out.read_text() or up.poll() is not None, timeout=240, interval=0.2)
        assert up.poll() is None, out.read_text()
        yield up, data_dir, out.read_text()
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(60)


def test_first_run_prints_url_ca_and_a_bootstrap_admin_key(stack: Stack) -> None:
    _up, data_dir, output = stack
    assert "gateway:  https://localhost:" in output
    assert str(data_dir / "tls" / "ca.crt") in output
    assert re.search(r"admin key: hk_live_\w{61}", output)
    assert "***" in output  # the database password is redacted


def test_status_then_quickstart_runs_as_written(stack: Stack, tmp_path: Path) -> None:
    _up, data_dir, _ = stack
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOKUSAI_", "MLFLOW_"))}
    env["HOKUSAI_DATA_DIR"] = str(data_dir)
    status = subprocess.run(
        [HOKUSAI, "gateway", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stdout + status.stderr

    script = ["set -euo pipefail"]
    for kind, body in quickstart_blocks():
        if kind == "console":
            script += [line[2:] for line in body.splitlines() if line.startswith("$ ")]
            script += [line for line in body.splitlines() if line.startswith("    ")]
        elif kind == "python":
            (tmp_path / "quickstart.py").write_text(body)
            script.append(f"{sys.executable} {tmp_path / 'quickstart.py'}")
        else:
            (tmp_path / "quickstart.mjs").write_text(body)
            script.append(
                f'NODE_EXTRA_CA_CERTS="$HOKUSAI_CA_CERT" node {tmp_path / "quickstart.mjs"}'
            )
    joined = "\n".join(script).replace("\\\n", " ")
    done = subprocess.run(
        ["bash", "-c", joined],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert re.search(r"^quickstart$", done.stdout, re.M)  # the stock MLflow client saw it
    assert '"experiments"' in done.stdout  # curl
    assert re.search(r"200 \d+$", done.stdout, re.M)  # fetch
    assert re.search(KEY_PATTERN, done.stderr) is None  # the key went to stdout only


def test_sigterm_leaves_nothing_running(stack: Stack) -> None:
    up, _data_dir, _ = stack
    children = descendants(up.pid)
    assert len(children) >= 5  # postgres, redis, mlflow, authz, envoy (and their workers)
    up.send_signal(signal.SIGTERM)
    assert up.wait(60) == 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(p) for p in children):
        time.sleep(0.1)
    assert not [p for p in children if alive(p)]
