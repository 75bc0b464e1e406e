"""The ``hokusai`` console script in another process, as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HOKUSAI = Path(sys.executable).parent / "hokusai"


def run_hokusai(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """``hokusai args…`` with none of our environment's HOKUSAI_* variables but ``settings``
    (``HOKUSAI_DATA_DIR=…``, ``HOKUSAI_DATABASE_URL=…``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOKUSAI_")}
    env.update(settings)
    return subprocess.run(
        [str(HOKUSAI), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
