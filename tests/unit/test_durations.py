"""Durations, rate limits, timestamps and look-backs (authz/keys/durations.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authz.errors import InvalidInput
from authz.keys.durations import (
    MAX_PERIOD,
    format_duration,
    parse_duration,
    parse_period,
    parse_rate,
    parse_since,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("24h", 86400),
        ("30d", 2592000),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("2w", 1209600),
        ("45", 45),
        (" 2H ", 7200),
        ("1.5h", 5400),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5x", "h", "1h 30m", "-5s", "1y", "abc", "1h-"])
def test_malformed_durations(text: str) -> None:
    with pytest.raises(ValueError, match="malformed duration"):
        parse_duration(text)


@given(st.integers(0, 10**8))
def test_format_round_trips(seconds: int) -> None:
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta


@given(st.text(max_size=30))
def test_parse_duration_only_raises_value_error(text: str) -> None:
    try:
        assert parse_duration(text) >= timedelta(0)
    except ValueError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize(
    ("text", "per_hour"),
    [
        ("1000/h", 1000),
        ("50/min", 3000),
        ("10/s", 36000),
        ("24/day", 1),
        ("0", 0),
        ("120", 120),
        ("100 / 2h", 50),
        ("60/minute", 3600),
    ],
)
def test_parse_rate(text: str, per_hour: int) -> None:
    assert parse_rate(text) == per_hour


@pytest.mark.parametrize("text", ["lots", "-5/h", "1/0h", "5/fortnight", "1/7d", ""])
def test_malformed_rates(text: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate(text)


@given(st.integers(0, 10**6), st.sampled_from(["h", "hour", "hr"]))
def test_hourly_rates_are_exact(count: int, unit: str) -> None:
    assert parse_rate(f"{count}/{unit}") == count


NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", NOW - timedelta(hours=24)),
        (" 7D ", NOW - timedelta(days=7)),
        ("90", NOW - timedelta(seconds=90)),
        ("2030-05-01T00:00:00Z", datetime(2030, 5, 1, tzinfo=UTC)),
        ("2030-05-01T02:00:00+02:00", datetime(2030, 5, 1, tzinfo=UTC)),
        ("2030-05-01", datetime(2030, 5, 1, tzinfo=UTC)),  # no offset: UTC
    ],
)
def test_since_is_a_look_back_or_a_moment(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("40000d", "longer than 36500 days"),  # a duration, refused as one
        ("9" * 30 + "d", "too long"),  # not an overflow traceback
        ("tomorrow", "malformed timestamp"),
    ],
)
def test_since_refuses_with_one_line(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_since(text, NOW)


def test_periods_are_bounded() -> None:
    assert parse_period(f"{MAX_PERIOD.days}d") == MAX_PERIOD
    with pytest.raises(InvalidInput, match="longer than"):
        parse_period(f"{MAX_PERIOD.days + 1}d")
