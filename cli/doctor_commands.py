"""``hokusai doctor``: the Python client's connection doctor (``hokusai.doctor``), mounted in the
ops CLI so operators and data scientists run the same checks with the same flags.

It reads ``HOKUSAI_GATEWAY_URL`` / ``HOKUSAI_API_KEY`` / ``HOKUSAI_CA_CERT`` first and, for a
stock MLflow client, ``MLFLOW_TRACKING_URI`` / ``MLFLOW_TRACKING_TOKEN`` /
``MLFLOW_TRACKING_SERVER_CERT_PATH``; ``--write`` adds the write round trip. Output and exit codes
are ``hokusai-doctor``'s (see ``hokusai.doctor.cli``). Nothing of the checks is defined here.
"""

from __future__ import annotations

from typing import Any

from hokusai.doctor import cli as doctor_cli


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "doctor",
        help="diagnose an MLflow connection through the gateway",
        description=doctor_cli.DESCRIPTION,
    )
    doctor_cli.add_arguments(parser)
    parser.set_defaults(handler=doctor_cli.run_args)
