"""The ``hokusai`` command: argument parsing, dispatch, and the one mapping of failures to exits.

Each command group lives in its own module exposing ``register(commands)``, which adds its
sub-parsers to the top-level ``commands`` (an argparse sub-parsers action) and sets
``handler=<function(args) -> int>`` on each leaf parser. To add a group (``gateway``, ``doctor``,
``settings``), write the module and append its ``register`` to ``REGISTRARS``.

Exit codes: 0 ok; 1 the operation failed (unknown key, database unreachable); 2 bad usage
(argparse errors, invalid input, bad settings). Every failure is one line on stderr.

The ``hokusai`` console script is ``run``: it installs the redacting logger every authz process
installs (``authz.telemetry.logs``), then calls ``main``, which tests and other callers may call
in-process without their logging being replaced.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from authz.errors import HokusaiError
from authz.settings import Settings, SettingsError
from authz.telemetry import logs
from cli import (
    admin_commands,
    auth_commands,
    db_commands,
    doctor_commands,
    gateway_commands,
    settings_commands,
    usage_commands,
)

Registrar = Callable[[Any], None]  # receives the top-level sub-parsers action

REGISTRARS: list[Registrar] = [
    auth_commands.register,
    db_commands.register,
    gateway_commands.register,
    usage_commands.register,  # after auth and db: it adds to their groups
    admin_commands.register,  # after auth and db too: events, prune-events, policy
    doctor_commands.register,
    settings_commands.register,
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A command line argparse rejected; carries one line."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (raised, not printed and exited)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser(registrars: Sequence[Registrar] = REGISTRARS) -> Parser:
    parser = Parser(prog="hokusai", description="Hokusai Gateway: API keys for MLflow on Envoy.")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    for register in registrars:
        register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (the console script passes it to ``sys.exit``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        code: int = args.handler(args)
        return code
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except HokusaiError as exc:
        return _fail(f"error: {exc.message}", exc.exit_code)
    except SettingsError as exc:
        return _fail(f"error: {exc}", EXIT_USAGE)
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


def _fail(message: str, code: int) -> int:
    print(" ".join(message.split()), file=sys.stderr)
    return code


def run() -> int:
    """The console script: the redacting logger (at ``HOKUSAI_LOG_LEVEL``), then the command.

    Invalid settings fall back to the defaults here; the command itself reports them."""
    try:
        settings = Settings.from_env()
    except SettingsError:
        settings = Settings()
    logs.configure_logging(settings)
    return main()


if __name__ == "__main__":
    sys.exit(run())
