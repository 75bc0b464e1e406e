"""docs/python-client.md, executed against the real gateway: every ```console command (one bash
session for the page) and every ```python block, in page order, with the conventions of
tests/e2e/test_docs_guides.py. The install line runs in tests/e2e/test_client_install.py, in a
fresh virtual environment — here the client is already installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Gateway
from tests.e2e.test_docs_guides import DOCS, PageRun, base_env
from tests.support import docs

PAGE = "python-client.md"


@pytest.fixture
def one(gateways: dict[str, Gateway]) -> Gateway:
    return gateways["http"]


class ClientPage(PageRun):
    def command(self, command: docs.Command) -> None:
        if command.text.startswith("pip install"):
            return  # executed by test_client_install.py
        super().command(command)


def test_every_block_is_runnable() -> None:
    langs = [block.lang for block in docs.blocks(DOCS / PAGE)]
    assert set(langs) <= {"console", "python", "text"}
    assert langs.count("python") >= 7 and langs.count("text") == 1  # the error tree


def test_the_python_client_page_runs(one: Gateway, tmp_path: Path) -> None:
    env = {**base_env(one), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    page = ClientPage(PAGE, one, docs.Shell(tmp_path, env))
    page.run()
    printed = "\n".join(page.outputs)
    assert "remote Identity(key='hk_live_" in printed  # the quickstart
    assert "fallback " + str(tmp_path / "xdg" / "hokusai" / "mlflow") in printed
    assert "copied offline-demo/" in printed  # the copy recipe found the fallback run
    assert "disabled - cannot reach https://127.0.0.1:9" in printed
    assert "MockExperimentManager 1" in printed
    assert "hk_live_mistyped" not in printed.replace("HOKUSAI_API_KEY=hk_live_mistyped", "")
