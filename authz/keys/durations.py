"""Human durations ("90s", "15m", "24h", "30d", "1h30m", "500ms"), rates ("1000/h"), timestamps,
and the "since" of a look-back — every time-like input of settings, the CLI and the REST API.

Malformed input raises ``InvalidInput`` (a ``ValueError``) with a one-line reason; settings turn
it into a ``SettingsError`` naming the variable, the CLI into exit 2, the REST API into 422.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from authz.errors import InvalidInput

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
_RATE = re.compile(r"(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hr|hour|d|day)")
_RATE_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hr": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
MAX_PERIOD = timedelta(days=36_500)  # beyond this, datetime arithmetic would overflow


def parse_duration(text: str) -> timedelta:
    """Parse a duration; a bare number is seconds."""
    raw = text.strip().lower()
    if not raw or not (_NUMBER.fullmatch(raw) or _WHOLE.fullmatch(raw)):
        raise InvalidInput(
            f"malformed duration {text.strip()[:40]!r} (examples: 90s, 15m, 24h, 30d)"
        )
    if _NUMBER.fullmatch(raw):
        seconds = float(raw)
    else:
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(raw))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise InvalidInput(f"duration {text.strip()[:40]!r} is too long") from None


def parse_period(text: str) -> timedelta:
    """A duration a person gives for a key (lifetime, grace period) or a report (look-back):
    ``parse_duration``, at most ``MAX_PERIOD``."""
    value = parse_duration(text)
    if value > MAX_PERIOD:
        raise InvalidInput(f"durations longer than {MAX_PERIOD.days} days are not accepted")
    return value


def format_duration(delta: timedelta) -> str:
    """The shortest readable form, largest unit first: 1d2h, 15m, 0s."""
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_rate(text: str) -> int:
    """Parse a rate such as "1000/h", "50/min" or "10/s" into requests per hour.

    A bare integer is requests per hour; 0 means unlimited (only when written explicitly).
    """
    raw = text.strip().lower()
    if raw.isdigit():
        return int(raw)
    match = _RATE.fullmatch(raw)
    if not match:
        raise InvalidInput(f"malformed rate limit {text.strip()[:40]!r} (examples: 1000/h, 50/min)")
    count, multiple, unit = int(match[1]), int(match[2] or 1), match[3]
    if multiple == 0:
        raise InvalidInput(f"malformed rate limit {text.strip()[:40]!r}: zero-length period")
    # Exact arithmetic: with floats 57/h came out as 56.99999… and was rejected.
    per_hour = Fraction(count * 3600, multiple * _RATE_UNITS[unit])
    if per_hour.denominator != 1:
        raise InvalidInput(f"rate limit {text.strip()[:40]!r} is not a whole number per hour")
    return int(per_hour)


def parse_timestamp(text: str) -> datetime:
    """ISO-8601; without an offset the time is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"malformed timestamp {text.strip()[:40]!r}: expected ISO-8601, "
            "e.g. 2030-01-31T12:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_since(text: str, now: datetime) -> datetime:
    """The start of a look-back, as ``hokusai auth audit|usage --since`` and the REST API's
    ``?since=`` take it: a duration back from ``now`` ("24h", "7d"; a bare number is seconds; at
    most ``MAX_PERIOD``) or an ISO-8601 time (UTC when it has no offset).

    Text shaped like a duration is a duration: one that is too long is refused as such, never
    re-read as a time (the REST API used to answer "malformed timestamp" for it, and the CLI to
    crash on an overflow).
    """
    raw = text.strip().lower()
    if _NUMBER.fullmatch(raw) or _WHOLE.fullmatch(raw):
        return now - parse_period(text)
    return parse_timestamp(text)
