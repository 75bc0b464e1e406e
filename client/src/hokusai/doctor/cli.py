"""``hokusai-doctor`` / ``python -m hokusai.doctor``: the checks as a command.

Output, one line per check (stdout): ``ok|FAIL|skip <check>: <detail>``, and after each failure a
line ``  → <what to do>``. ``--json`` prints ``{"ok": bool, "checks": [{check, status, detail,
advice}]}`` instead. Exit 0 when every check passed, 1 otherwise, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from urllib.parse import urlsplit

from hokusai import doctor
from hokusai.gateway import MLFLOW_PREFIX
from hokusai.reasons import Names

DESCRIPTION = (
    "Checks URL, DNS, TCP, TLS, the gateway, MLflow and the key, in order, and says what to do "
    "for each failure. Defaults: HOKUSAI_GATEWAY_URL, HOKUSAI_API_KEY, HOKUSAI_CA_CERT; for a "
    "stock MLflow client MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN, "
    "MLFLOW_TRACKING_SERVER_CERT_PATH."
)


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(prog="hokusai-doctor", description=DESCRIPTION)
    add_arguments(made)
    return made


def add_arguments(made: argparse.ArgumentParser) -> None:
    """The doctor's flags, on its own parser or on a host command's (``hokusai doctor``)."""
    made.add_argument("--url", help="the gateway (or MLflow's tracking URI on it)")
    made.add_argument("--key", help="API key (default: $HOKUSAI_API_KEY); never printed")
    made.add_argument("--ca", metavar="PATH", help="CA certificate (PEM) to trust")
    made.add_argument(
        "--timeout",
        type=_timeout,
        default=5.0,
        metavar="SECONDS",
        help="per network step (default 5)",
    )
    made.add_argument(
        "--write",
        action="store_true",
        help="also try a write: a run in experiment hokusai-doctor with a param, a "
        "metric and an artifact read back, then deleted",
    )
    made.add_argument("--json", action="store_true", help="one JSON document on stdout")


def target_of(args: argparse.Namespace) -> doctor.Target:
    """Each flag overrides its variable; the rest come from the environment."""
    env = doctor.from_env()
    names = Names(
        key="--key" if args.key else env.names.key,
        url="--url" if args.url else env.names.url,
        ca="--ca" if args.ca else env.names.ca,
    )
    kind = env.url_kind
    if args.url:
        kind = (
            "tracking" if urlsplit(args.url).path.rstrip("/").endswith(MLFLOW_PREFIX) else "gateway"
        )
    return replace(
        env,
        url=args.url or env.url,
        key=args.key or env.key,
        ca=args.ca or env.ca,
        timeout=args.timeout,
        write=args.write,
        names=names,
        url_kind=kind,
    )


def render(results: list[doctor.Result]) -> str:
    lines = []
    for result in results:
        lines.append(f"{result.status} {result.check}: {result.detail}")
        if result.status == "FAIL" and result.advice:
            lines.append(f"  → {result.advice}")
    return "\n".join(lines)


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 120:
        raise argparse.ArgumentTypeError("must be between 0 and 120 seconds")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return run_args(args)


def run_args(args: argparse.Namespace) -> int:
    """Run the checks for parsed flags, print the report; 0 when every check passed, else 1."""
    results = doctor.run(target_of(args))
    healthy = doctor.passed(results)
    if args.json:
        print(json.dumps({"ok": healthy, "checks": [asdict(r) for r in results]}, indent=2))
    else:
        print(render(results))
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
