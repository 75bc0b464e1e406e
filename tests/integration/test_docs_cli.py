"""Runs every ``$ hokusai …`` line of docs/cli.md, in order, against a fresh database.

``KEY_ID`` becomes the id of the first key a line creates, ``NEW_ID`` the id of the key the first
``rotate-key`` line issues; a line ending in ``# exit N`` must exit with N, every other with 0.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from authz.keys import format as keys
from cli.main import main
from tests.support import docs

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
TOKEN = re.compile(keys.KEY_PATTERN)


def doc_commands() -> list[tuple[int, str]]:
    """(line number, command) for every ``$ hokusai`` line inside a ```console block."""
    return [(c.line, c.text) for c in docs.console_commands(DOC, prefix="$ hokusai ")]


def test_the_doc_covers_every_command() -> None:
    commands = " ".join(command for _, command in doc_commands())
    for name in (
        "create-key",
        "list-keys",
        "show-key",
        "update-key",
        "revoke-key",
        "rotate-key",
        "audit --verify",
        "audit --key",
        "auth events",
        "list-keys --expiring",
        "webhook-deliveries",
        "policy set",
        "policy show",
        "db prune-events",
        "db migrate",
        "db rollback",
        "db status",
        "disable-user",
        "enable-user",
        "db prune-sessions",
    ):
        assert f" {name}" in commands, name


def test_every_example_runs(database_url, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HOKUSAI_DATABASE_URL", database_url)
    names: dict[str, str] = {}
    for number, command in doc_commands():
        expected = docs.Command(number, command, ()).expected_exit
        line = command
        for placeholder, value in names.items():
            line = line.replace(placeholder, value)
        argv = shlex.split(line, comments=True)[1:]
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == expected, f"docs/cli.md:{number}: {command}\n{err}"
        if expected:
            assert len(err.strip().splitlines()) == 1, f"docs/cli.md:{number}: {err}"
        created = TOKEN.search(out)
        if created:
            key_id = keys.parse(created[0]).key_id  # type: ignore[union-attr]
            if "rotate-key" in argv:
                names.setdefault("NEW_ID", key_id)
            names.setdefault("KEY_ID", key_id)
    assert set(names) == {"KEY_ID", "NEW_ID"}
