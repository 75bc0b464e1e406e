"""docs/operations.md: every `sh` block runs from the repository root; docs/configuration.md is
the generated settings reference."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli import settings_commands

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def sh_blocks(page: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", (REPO / "docs" / page).read_text(), re.S)


@pytest.mark.parametrize("block", sh_blocks("operations.md"))
def test_operations_commands_run(block: str) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=REPO,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_configuration_reference_is_generated() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text()
    assert committed == settings_commands.page(), "run hokusai settings --write"
