"""Runs every ``$ hokusai …`` line of docs/rate-limits.md and docs/usage.md, in order.

``KEY_ID`` becomes the id of the first key a page's lines create; right after it is created some
traffic for it is recorded in ``api_key_usage`` (through the real aggregator), so the usage
commands have something to show.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import time
from pathlib import Path

import pytest

from authz.keys import format as keys
from authz.usage.rollups import UsageAggregator, UsageEvent
from cli.main import main

DOCS = Path(__file__).resolve().parents[2] / "docs"
TOKEN = re.compile(keys.KEY_PATTERN)


def doc_commands(page: str) -> list[tuple[int, str]]:
    found, inside = [], False
    for number, line in enumerate((DOCS / page).read_text().splitlines(), start=1):
        if line.startswith("```"):
            inside = line.strip() == "```console"
        elif inside and line.startswith("$ hokusai "):
            found.append((number, line[2:]))
    return found


def record_traffic(database_url: str, key_id: str) -> None:
    usage = UsageAggregator(database_url)
    now = time.time()
    for status, route, n in (
        (200, "/api/mlflow/api/2.0/mlflow/runs/search", 6),
        (404, "/api/mlflow/api/2.0/mlflow/runs/get", 3),
        (503, "/api/mlflow/api/2.0/mlflow/runs/search", 2),
    ):
        for i in range(n):
            usage.record(UsageEvent(key_id, now, route, "GET", status, 1.0 + i))
    asyncio.run(usage.flush())


@pytest.mark.parametrize("page", ["rate-limits.md", "usage.md"])
def test_every_example_runs(
    page: str,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOKUSAI_DATABASE_URL", database_url)
    key_id = ""
    outputs = []
    for number, command in doc_commands(page):
        argv = shlex.split(command.replace("KEY_ID", key_id), comments=True)[1:]
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 0, f"docs/{page}:{number}: {command}\n{err}"
        outputs.append((argv, out))
        created = TOKEN.search(out)
        if created and not key_id:
            key_id = keys.parse(created[0]).key_id  # type: ignore[union-attr]
            record_traffic(database_url, key_id)
    assert key_id
    if page == "usage.md":
        reports = [json.loads(out) for argv, out in outputs if "--json" in argv and key_id in argv]
        assert reports and reports[0]["total"]["requests"] == 11
        shown = next(out for argv, out in outputs if argv == ["auth", "usage", key_id])
        assert "requests 11" in shown and "2xx 6 · 4xx 3 · 5xx 2" in shown


def test_docs_cover_the_commands() -> None:
    commands = " ".join(c for page in ("rate-limits.md", "usage.md") for _, c in doc_commands(page))
    for name in (
        "--rate-limit",
        "--burst",
        "auth usage KEY_ID",
        "--by endpoint",
        "--by status",
        "--top",
        "--json",
        "db prune-usage",
        "--older-than",
    ):
        assert name in commands, name
