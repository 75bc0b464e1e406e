"""The redacting logger every authz process installs (the Check server, the keys REST API, the
CLI): ``configure_logging(settings)``.

It installs a JSON (or text) formatter whose every output line, and a filter whose every record,
passes through ``redact`` — keys (``authz.keys.format.KEY_PATTERN`` and anything that looks like a
mangled one), bearer tokens, ``X-API-Key`` values and ``api_key=`` query values are replaced
before anything is written, whichever library logged it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

from authz.settings import Settings

REDACTED = "[REDACTED]"
_SECRETS = re.compile(
    r"hk_(?:live|test)_[0-9A-Za-z_]+"  # a key — whole, truncated, extended or mistyped
    r"|(?i:(?<=bearer)\s+[^\s,;\"']+)"  # a bearer token of any shape
    r"|(?i:(?<=x-api-key)[\"']?\s*[:=]\s*[\"']?[^\s,;&\"']+)"  # X-API-Key: value
    r"|(?i:(?<=api_key=)[^\s&\"',;]+)"  # ?api_key=value
    r"|(?i:(?<=authorization)[\"']?\s*[:=]\s*[\"']?[^\"',;\n]+)"  # Authorization: anything
)


def redact(text: str) -> str:
    """``text`` with every key, bearer token, X-API-Key and api_key value replaced."""
    if "hk_" not in text and not _maybe_credential(text):
        return text
    return _SECRETS.sub(_replacement, text)


def _maybe_credential(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in ("bearer", "api-key", "api_key", "authorization"))


def _replacement(match: re.Match[str]) -> str:
    found = match.group(0)
    prefix = re.match(r"[\"']?\s*[:=]?\s*[\"']?|\s+", found)
    lead = prefix.group(0) if prefix else ""
    return lead + REDACTED if not found.startswith("hk_") else REDACTED


class RedactingFilter(logging.Filter):
    """Rewrites each record in place: message (with its arguments), extras and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for name, value in list(vars(record).items()):
            if name not in _STANDARD and isinstance(value, str):
                setattr(record, name, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.exc_info = None  # formatted and redacted above; never formatted again raw
        return True


_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return redact(json.dumps(entry, default=str))


class RedactingTextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def log_handler(settings: Settings, stream: Any = None) -> logging.Handler:
    """A handler writing ``settings.log_format`` lines, redacted twice (record and output)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        JsonFormatter()
        if settings.log_format == "json"
        else RedactingTextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    return handler


def configure_logging(settings: Settings) -> None:
    """Replace the root logger's handlers with one redacting handler at the configured level."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(log_handler(settings))
    root.setLevel(settings.log_level.upper())
