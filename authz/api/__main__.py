"""``python -m authz.api``: serve the keys REST API with uvicorn on HOKUSAI_API_HOST:PORT.

The process installs the redacting logger (``authz.telemetry.logs``) and tells uvicorn not to
configure logging itself (``log_config=None``): uvicorn's loggers then propagate to it, so every
line this process writes is redacted and in ``HOKUSAI_LOG_FORMAT``.
"""

from __future__ import annotations

import sys

import uvicorn

from authz.api.app import create_app
from authz.settings import Settings, SettingsError
from authz.telemetry import logs


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"hokusai api: {exc}", file=sys.stderr)
        return 2
    logs.configure_logging(settings)
    # access_log off: uvicorn's access log would write the query string.
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
