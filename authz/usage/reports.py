"""Usage reports: what ``hokusai auth usage`` and ``GET …/keys/{id}/usage`` show.

Rows come from ``authz.storage.usage.grouped`` and are summed here per label (the latency bucket
arrays add element-wise); p50/p95 come from the summed histogram (``authz.usage.rollups``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg

from authz.storage import usage as usage_sql
from authz.usage.rollups import BUCKETS, percentile


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group of a report (an endpoint, a status class, an interval or a key)."""

    label: str
    count: int
    errors: int
    latency_sum_ms: float
    latency_max_ms: float
    buckets: list[int]

    @property
    def p50(self) -> float | None:
        return percentile(self.buckets, 0.50, self.latency_max_ms)

    @property
    def p95(self) -> float | None:
        return percentile(self.buckets, 0.95, self.latency_max_ms)

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "requests": self.count,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "latency_avg_ms": _round(self.latency_sum_ms / self.count if self.count else None),
            "latency_max_ms": round(self.latency_max_ms, 3),
            "p50_ms": _round(self.p50),
            "p95_ms": _round(self.p95),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def report(
    conn: psycopg.Connection[Any],
    key_id: str | None,
    since: datetime,
    by: str,
    interval: timedelta | None = None,
) -> list[UsageRow]:
    """Rows grouped by ``by`` (endpoint, status, key, total, or "interval" with ``interval``)."""
    groups: dict[str, list[Any]] = {}
    for row in usage_sql.grouped(conn, key_id, since, by, interval):
        _add_group(groups, row)
    rows = [UsageRow(k, *v) for k, v in groups.items()]
    return sorted(rows, key=lambda r: -r.count) if by != "interval" else rows


def _add_group(groups: dict[str, list[Any]], row: tuple[Any, ...]) -> None:
    label, count, errors, total, peak, buckets = row
    padded = list(buckets) + [0] * (BUCKETS - len(buckets))
    group = groups.get(label)
    if group is None:
        groups[label] = [int(count), int(errors), float(total), float(peak), padded]
        return
    group[0] += int(count)
    group[1] += int(errors)
    group[2] += float(total)
    group[3] = max(group[3], float(peak))
    group[4] = [a + b for a, b in zip(group[4], padded, strict=True)]


# --- one key's report: the figures of `hokusai auth usage` and of GET …/keys/{id}/usage -------

CHART_STEPS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
CHART_COLUMNS = 48


def chart_step(span: timedelta) -> int:
    """The smallest interval that fits ``span`` into ``CHART_COLUMNS`` columns (seconds)."""
    seconds = span.total_seconds()
    return next((s for s in CHART_STEPS if seconds / s <= CHART_COLUMNS), CHART_STEPS[-1])


@dataclass(frozen=True, slots=True)
class KeyReport:
    key_id: str
    since: datetime
    interval_seconds: int
    total: UsageRow | None
    endpoints: list[UsageRow]
    status_classes: list[UsageRow]
    series: list[tuple[int, int]]  # (interval start, epoch seconds; requests), gaps as 0
    # Refused checks by reason (authentication events, authz/events/), beside the admissions.
    denials: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "since": self.since.isoformat(),
            "interval_seconds": self.interval_seconds,
            "total": self.total.to_json() if self.total else None,
            "endpoints": [r.to_json() for r in self.endpoints],
            "status_classes": [r.to_json() for r in self.status_classes],
            "series": [
                {"start": datetime.fromtimestamp(t).astimezone().isoformat(), "requests": n}
                for t, n in self.series
            ],
            "denials": dict(self.denials),
        }


def with_denials(report: KeyReport, denials: dict[str, int]) -> KeyReport:
    """The report with the key's refused checks by reason."""
    return replace(report, denials=dict(denials))


def key_report(
    conn: psycopg.Connection[Any], key_id: str, since: datetime, now: datetime
) -> KeyReport:
    """Totals, endpoints, status classes and a per-interval series for one key."""
    step = chart_step(now - since)
    grouped = {by: report(conn, key_id, since, by) for by in ("total", "endpoint", "status")}
    counts = {
        int(r.label): r.count
        for r in report(conn, key_id, since, "interval", timedelta(seconds=step))
    }
    start = int(since.timestamp()) // step * step
    series = [(t, counts.get(t, 0)) for t in range(start, int(now.timestamp()) + 1, step)]
    return KeyReport(
        key_id,
        since,
        step,
        next(iter(grouped["total"]), None),
        grouped["endpoint"],
        grouped["status"],
        series,
    )
