"""Every curl, Python and JavaScript example in docs/rest-api.md runs against the real gateway.

Each block gets ``GATEWAY``, ``CA_CERT``, ``API_KEY`` (an admin key, so the audit example runs
too) and ``KEY_ID`` (a fresh key of the caller's user) and must exit 0: curl runs with ``-f``,
the Python examples call ``raise_for_status``, the JavaScript ones throw on a wrong status.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Gateway

DOC = Path(__file__).resolve().parents[2] / "docs" / "rest-api.md"
RUNNERS = {
    "bash": ["bash", "-euo", "pipefail", "-c"],
    "python": [sys.executable, "-c"],
    "javascript": ["node", "--input-type=module", "-e"],
}
BLOCKS = [
    (m[1], m[2])
    for m in re.finditer(r"```(\w+)\n(.*?)```", DOC.read_text(), re.S)
    if m[1] in RUNNERS
]
OWNER = "docs-reader@example.com"


def test_doc_has_every_kind_of_example() -> None:
    text = DOC.read_text()
    assert {lang for lang, _ in BLOCKS} == set(RUNNERS)
    assert "import httpx" in text and "import requests" in text and "fetch(" in text


@pytest.fixture(scope="module")
def api_key(gateways: dict[str, Gateway]) -> str:
    _view, new = (
        gateways["grpc"]
        .service("test:docs")
        .create_key(user_email=OWNER, name="docs-admin", scopes=["admin"])
    )
    return new.token


@pytest.mark.parametrize(
    ("lang", "code"), BLOCKS, ids=[f"{i}-{lang}" for i, (lang, _) in enumerate(BLOCKS)]
)
def test_example_runs(gateways: dict[str, Gateway], api_key: str, lang: str, code: str) -> None:
    if shutil.which(RUNNERS[lang][0]) is None:
        pytest.skip(f"{RUNNERS[lang][0]} is not installed")
    gateway = gateways["grpc"]
    view, _new = gateway.service("test:docs").create_key(user_email=OWNER, name="docs-target")
    env = {
        **os.environ,
        "GATEWAY": gateway.url,
        "CA_CERT": gateway.ca,
        "API_KEY": api_key,
        "KEY_ID": view.key_id,
        "NODE_EXTRA_CA_CERTS": gateway.ca,
    }
    done = subprocess.run(
        [*RUNNERS[lang], code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert api_key.rsplit("_", 1)[1] not in done.stdout + done.stderr
