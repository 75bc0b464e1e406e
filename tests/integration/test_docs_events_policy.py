"""docs/events.md and docs/policy.md, executed: every ``$ hokusai …`` line of their ```console
blocks in order against a fresh database (exit codes, and the documented output lines), and the
webhook receiver's ``verify`` of docs/policy.md against real signatures.

``KEY_ID`` becomes the id of the first key a page creates; on docs/events.md three refused checks
of that key are then recorded through the real recorder, so the queries have something to show.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from authz.check.checker import CheckInput, Decision
from authz.check.credentials import CredentialSources
from authz.check.reasons import Reason
from authz.events import webhook
from authz.events.recorder import EventRecorder
from authz.keys import format as keys
from authz.keys.record import KeyRecord
from authz.management.service import KeyService
from authz.settings import Settings
from authz.storage.db import connector
from cli.main import main
from tests.support import docs

DOCS = Path(__file__).resolve().parents[2] / "docs"
CREATED = re.compile(r"created hk_(?:live|test)_([0-9A-Za-z]{12})\b")


def refuse(database_url: str, key_id: str, times: int = 3) -> None:
    recorder = EventRecorder(database_url, queue_size=100, flush_interval=1, retention=86400)
    request = CheckInput(
        "GET",
        "/api/mlflow/api/2.0/mlflow/runs/search?run_id=1",
        CredentialSources(None, None, ""),
        "10.1.2.3",
    )
    owner = KeyService(connector(database_url), Settings(), "test:docs").get_key(key_id).user_id
    record = KeyRecord(key_id, owner, "live", "", frozenset(), None, 1.0, (), None, None, 2)
    for _ in range(times):
        recorder.denied(Decision(Reason.REVOKED, record=record, key_id=key_id), request)
    asyncio.run(recorder.flush())


def test_events_page(database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    run_page("events.md", database_url, capsys, monkeypatch)


def test_policy_page(database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    run_page("policy.md", database_url, capsys, monkeypatch)


def run_page(
    page: str, database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """Every ``$ hokusai`` line of ``page`` in order: exit codes and documented output."""
    monkeypatch.setenv("HOKUSAI_DATABASE_URL", database_url)
    names: dict[str, str] = {}
    commands = docs.console_commands(DOCS / page, prefix="$ hokusai ")
    assert commands
    for command in commands:
        where = f"docs/{page}:{command.line}: {command.text}"
        argv = shlex.split(docs.substitute(command.text, names), comments=True)[1:]
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
        printed = out + err
        assert code == command.expected_exit, f"{where}\n{printed}"
        created = CREATED.search(printed)
        if created and "KEY_ID" not in names:
            names["KEY_ID"] = created[1]
            if page == "events.md":
                refuse(database_url, created[1])
        for documented in command.output:
            expected = docs.substitute(documented, names)
            assert docs.output_matches(expected, printed), f"{where}\n{expected}\n{printed}"
        assert re.search(keys.KEY_PATTERN, err) is None, where
    assert "KEY_ID" in names


def test_the_receivers_verify_accepts_our_signatures_only() -> None:
    [block] = [b for b in docs.blocks(DOCS / "policy.md") if b.lang == "python"]
    scope: dict[str, object] = {}
    exec(compile(block.text, "docs/policy.md", "exec"), scope)
    verify = scope["verify"]
    body = b'{"event": "key.expiring"}'
    header = webhook.sign("s3cret", body)
    assert verify("s3cret", header, body)  # type: ignore[operator]
    assert not verify("s3cret", header, body + b" ")  # type: ignore[operator]
    assert not verify("other", header, body)  # type: ignore[operator]
