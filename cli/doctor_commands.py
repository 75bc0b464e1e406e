"""``hokusai doctor``: diagnose an MLflow client's connection through the gateway.

Output, one line per check (stdout): ``ok|FAIL|skip <check>: <detail>``, and after each failure a
line ``  → <what to do>``. ``--json`` prints ``{"ok": bool, "checks": [{check, status, detail,
advice}]}`` instead. Exit 0 when every check passed, 1 otherwise, 2 for bad usage.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from typing import Any

from cli import doctor
from cli.output import emit_json


def target_of(args: argparse.Namespace) -> doctor.Target:
    """Each flag overrides its MLflow environment variable; the rest come from the environment."""
    env = doctor.mlflow_env()
    return replace(
        env,
        url=args.url or env.url,
        key=args.key or env.key,
        ca=args.ca or env.ca,
        timeout=args.timeout,
    )


def render(results: list[doctor.Result]) -> str:
    lines = []
    for result in results:
        lines.append(f"{result.status} {result.check}: {result.detail}")
        if result.status == "FAIL" and result.advice:
            lines.append(f"  → {result.advice}")
    return "\n".join(lines)


def _doctor(args: argparse.Namespace) -> int:
    results = doctor.run(target_of(args))
    healthy = doctor.passed(results)
    if args.json:
        emit_json({"ok": healthy, "checks": [asdict(r) for r in results]})
    else:
        print(render(results))
    return 0 if healthy else 1


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 120:
        raise argparse.ArgumentTypeError("must be between 0 and 120 seconds")
    return value


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "doctor",
        help="diagnose an MLflow connection through the gateway",
        description="Checks URL, DNS, TCP, TLS, the gateway, MLflow and the key, in order, and "
        "says what to do for each failure. Defaults: MLFLOW_TRACKING_URI, "
        "MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_SERVER_CERT_PATH.",
    )
    parser.add_argument("--url", help="tracking URI (default: $MLFLOW_TRACKING_URI)")
    parser.add_argument("--key", help="API key (default: $MLFLOW_TRACKING_TOKEN); never printed")
    parser.add_argument(
        "--ca",
        metavar="PATH",
        help="CA certificate (default: $MLFLOW_TRACKING_SERVER_CERT_PATH, else the system store)",
    )
    parser.add_argument(
        "--timeout",
        type=_timeout,
        default=5.0,
        metavar="SECONDS",
        help="per network step (default 5)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.set_defaults(handler=_doctor)
