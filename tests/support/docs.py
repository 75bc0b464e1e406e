"""Executing the documentation: code blocks of a Markdown page, and a shell that runs them.

Conventions every executed page follows (see docs/index.md):

* In a ```console block, a line starting with ``$ `` is a command; a trailing ``\\`` continues it
  on the next line. A command ending in ``# exit N`` is an example of a failure and must exit
  with N; every other command must exit 0. Other lines are the output shown to the reader.
* ```python and ```javascript blocks are programs; ```text, ```yaml, ```ini, ```toml and
  ```json blocks are configuration or output and are never run.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

EXPECTED_EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # the number of the block's first content line, for messages
    text: str

    def numbered(self) -> list[tuple[int, str]]:
        return list(enumerate(self.text.splitlines(), start=self.line))


@dataclass(frozen=True)
class Command:
    line: int
    text: str  # without the leading "$ ", continuations joined
    output: tuple[str, ...]  # the documented output lines that follow it

    @property
    def expected_exit(self) -> int:
        match = EXPECTED_EXIT.search(self.text)
        return int(match[1]) if match else 0


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown page, in order."""
    found: list[Block] = []
    lang, start, body = "", 0, list[str]()
    inside = False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fence = FENCE.match(line)
        if fence and not inside:
            inside, lang, start, body = True, fence[1], number + 1, []
        elif line.startswith("```") and inside:
            inside = False
            found.append(Block(lang, start, "\n".join(body) + "\n"))
        elif inside:
            body.append(line)
    return found


def commands(block: Block, prefix: str = "$ ") -> list[Command]:
    """The commands of a console block that start with ``prefix`` (and the output after each)."""
    found: list[Command] = []
    pending: list[str] | None = None
    for number, line in block.numbered():
        if pending is not None:  # a continuation of the previous command
            pending.append(line.strip())
            if not line.endswith("\\"):
                found[-1] = Command(found[-1].line, _joined(pending), ())
                pending = None
        elif line.startswith("$ "):
            if line.startswith(prefix):
                found.append(Command(number, line[2:], ()))
                if line.endswith("\\"):
                    pending = [line[2:]]
        elif found and line.strip():
            last = found[-1]
            found[-1] = Command(last.line, last.text, (*last.output, line))
    return found


def _joined(parts: list[str]) -> str:
    return " ".join(part.removesuffix("\\").strip() for part in parts)


def console_commands(path: Path, prefix: str = "$ ") -> list[Command]:
    """Every command of every ```console block of a page, in order."""
    return [c for b in blocks(path) if b.lang == "console" for c in commands(b, prefix)]


def output_matches(documented: str, actual: str) -> bool:
    """Whether a documented output line appears in the actual output; ``…`` stands for anything."""
    pattern = ".*".join(re.escape(_squeezed(part)) for part in documented.split("…"))
    return any(re.fullmatch(pattern, _squeezed(line)) for line in actual.splitlines())


def _squeezed(text: str) -> str:
    """Runs of spaces as one: table columns are padded to the width of the real values."""
    return " ".join(text.split())


@dataclass
class Shell:
    """Runs commands in bash one at a time, carrying exported variables from one to the next.

    The state travels through a pipe, never a file: exported variables hold keys.
    """

    cwd: Path
    env: dict[str, str]
    timeout: float = 120
    history: list[str] = field(default_factory=list)

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        read_end, write_end = os.pipe()
        script = f"{command}\n__rc=$?\nenv -0 >&{write_end}\nexit $__rc\n"
        state: list[bytes] = []
        reader = threading.Thread(target=lambda: state.append(os.fdopen(read_end, "rb").read()))
        reader.start()
        try:
            done = subprocess.run(
                ["bash", "-c", script],
                cwd=self.cwd,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                pass_fds=(write_end,),
                check=False,
            )
        finally:
            os.close(write_end)
            reader.join(10)
        self.env = exported(state[0].decode() if state else "") or self.env
        self.history.append(command)
        return done


def exported(dump: str) -> dict[str, str]:
    """The variables of ``env -0`` output (bash's own bookkeeping left out)."""
    pairs = (item.split("=", 1) for item in dump.split("\0") if "=" in item)
    return {k: v for k, v in pairs if k not in {"PWD", "SHLVL", "_", "OLDPWD"}}


def substitute(text: str, names: Mapping[str, str]) -> str:
    for placeholder, value in names.items():
        text = text.replace(placeholder, value)
    return text
