"""Human durations ("90s", "15m", "24h", "30d", "1h30m", "500ms") and rate limits ("1000/h")."""

from __future__ import annotations

import re
from datetime import timedelta
from fractions import Fraction

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
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


def parse_duration(text: str) -> timedelta:
    """Parse a duration; a bare number is seconds. Raises ValueError with a one-line reason."""
    raw = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", raw):
        return timedelta(seconds=float(raw))
    if not raw or not _WHOLE.fullmatch(raw):
        raise ValueError(f"malformed duration {text.strip()[:40]!r} (examples: 90s, 15m, 24h, 30d)")
    total = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(raw))
    return timedelta(seconds=total)


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
        raise ValueError(f"malformed rate limit {text.strip()[:40]!r} (examples: 1000/h, 50/min)")
    count, multiple, unit = int(match[1]), int(match[2] or 1), match[3]
    if multiple == 0:
        raise ValueError(f"malformed rate limit {text.strip()[:40]!r}: zero-length period")
    # Exact arithmetic: with floats 57/h came out as 56.99999… and was rejected.
    per_hour = Fraction(count * 3600, multiple * _RATE_UNITS[unit])
    if per_hour.denominator != 1:
        raise ValueError(f"rate limit {text.strip()[:40]!r} is not a whole number per hour")
    return int(per_hour)
