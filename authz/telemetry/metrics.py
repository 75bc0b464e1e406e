"""The metrics of authz, declared here, and the exporters one process runs.

Metrics (OpenTelemetry, exported on a Prometheus scrape endpoint and/or over OTLP):

| instrument | labels |
|---|---|
| ``hokusai_checks`` (counter) | ``decision`` allow/deny, ``reason`` (``check.reasons.Reason``) |
| ``hokusai_check_duration`` (histogram, seconds, buckets from 1 µs) | ``transport`` grpc/http |
| ``hokusai_check_duration_bucket``, ``_sum`` (counters, OTLP only) | ``transport``, ``le`` |
| ``hokusai_cache_hits`` (counter) | ``tier`` local/redis/postgres/negative |
| ``hokusai_bcrypt_verifications`` (counter) | — |
| ``hokusai_store_errors`` (counter) | ``store`` postgres/redis |
| ``hokusai_rate_limit_decisions`` (counter) | ``outcome`` (``RATE_LIMIT_OUTCOMES``) |
| ``hokusai_access_log_batches`` (counter) | ``result`` flushed/dropped |
| ``hokusai_auth_events`` (counter) | ``result`` written/dropped (``authz/events/recorder.py``) |

Labels only ever come from closed sets — never a key id, path or address — so cardinality is
bounded and no key material can reach a metric.

Cost: recording through the OpenTelemetry SDK costs 3.5–6.5 µs per call here, about half of a
whole warm HTTP check. So the hot path only bumps plain Python integers (≈50 ns each) that
*observable* instruments read at collection time — the latency too: the check counts itself in
its fixed bucket (``LATENCY_BUCKETS``, one bisect) and adds to a sum, and nothing is handed to the
SDK per check (with metrics and OTLP off not even that). The OpenTelemetry API has no observable
histogram, so the buckets are exported without it: on the Prometheus endpoint as a real
``hokusai_check_duration_seconds`` histogram (a collector on our private registry, the same
names and labels the SDK histogram had), over OTLP as the cumulative counters
``hokusai_check_duration_bucket`` (per ``le``, not cumulative across buckets) and
``hokusai_check_duration_sum``. Check spans are ``tracing.py``'s; the redacting logger is
``logs.py``'s.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from authz.check.reasons import Reason
from authz.settings import Settings
from authz.telemetry import tracing

METER_NAME = tracing.SCOPE_NAME  # one instrumentation scope for metrics and spans
# Latency buckets (seconds): 1 µs doubling up to ~1 s — the warm path lives in the first few.
LATENCY_BUCKETS = tuple(1e-6 * 2**i for i in range(21))
_BOUNDS_NS = tuple(round(bound * 1e9) for bound in LATENCY_BUCKETS)  # bisect_left: ``le``
CACHE_TIERS = ("local", "redis", "postgres", "negative")
STORES = ("postgres", "redis")
RATE_LIMIT_OUTCOMES = ("ok", "over_limit", "failed_open", "failed_closed", "no_limit", "other")
TRANSPORTS = ("grpc", "http")


# --- hot-path state: plain integers, read by observable instruments ---------------------------
@dataclass(slots=True)
class Counts:
    checks: dict[Reason, int] = field(default_factory=lambda: dict.fromkeys(Reason, 0))
    cache: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CACHE_TIERS, 0))
    store_errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STORES, 0))
    rate_limit: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(RATE_LIMIT_OUTCOMES, 0)
    )
    access_log: dict[str, int] = field(default_factory=lambda: {"flushed": 0, "dropped": 0})
    auth_events: dict[str, int] = field(default_factory=lambda: {"written": 0, "dropped": 0})
    bcrypt_sources: list[Callable[[], int]] = field(default_factory=list)


@dataclass(slots=True)
class Latency:
    """One transport's check latencies: a count per bucket (the last is +Inf) and their sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    sum_ns: int = 0


COUNTS = Counts()
# Per transport, while an exporter runs (None: latencies are not measured at all).
_latency: dict[str, Latency] | None = None

now = time.perf_counter_ns  # the clock transports read when a check starts


def checked(reason: Reason, started_ns: int, transport: str, carrier: Any = None) -> None:
    """One finished check: count it, time it, and (tracing on) emit its span.

    ``carrier`` holds the request's trace context and is only read when tracing is on
    (``tracing.check_span``).
    """
    COUNTS.checks[reason] += 1
    if _latency is not None:
        elapsed = now() - started_ns
        latency = _latency[transport]
        latency.counts[bisect_left(_BOUNDS_NS, elapsed)] += 1
        latency.sum_ns += elapsed
    if tracing.tracer is not None:
        tracing.check_span(reason, started_ns, transport, carrier)


def cache_hit(tier: str) -> None:
    """A key record (or "unknown") was answered by ``tier`` (``CACHE_TIERS``)."""
    COUNTS.cache[tier] += 1


def store_error(store: str) -> None:
    """``store`` (postgres/redis) failed to answer."""
    COUNTS.store_errors[store] += 1


def rate_limit_decision(outcome: str) -> None:
    """One RateLimitService answer; unknown outcomes count as ``other`` (bounded labels)."""
    key = outcome if outcome in COUNTS.rate_limit else "other"
    COUNTS.rate_limit[key] += 1


def accesslog_batch(flushed: int, dropped: int) -> None:
    """One access-log batch: entries written to Postgres and entries dropped."""
    COUNTS.access_log["flushed"] += flushed
    COUNTS.access_log["dropped"] += dropped


def auth_events(written: int = 0, dropped: int = 0) -> None:
    """Authentication events written to Postgres, or dropped (queue full, failed flush)."""
    COUNTS.auth_events["written"] += written
    COUNTS.auth_events["dropped"] += dropped


def observe_bcrypt(source: Callable[[], int]) -> Callable[[], None]:
    """Report ``source()`` (a verifier's bcrypt run count) as bcrypt verifications; returns the
    function that stops reporting it (the count it reached is kept)."""
    COUNTS.bcrypt_sources.append(source)

    def remove() -> None:
        if source in COUNTS.bcrypt_sources:
            COUNTS.bcrypt_sources.remove(source)
            _retired_bcrypt.append(source())  # counters never go down

    return remove


_retired_bcrypt: list[int] = []


def bcrypt_total() -> int:
    return sum(_retired_bcrypt) + sum(source() for source in COUNTS.bcrypt_sources)


# --- exporters ---------------------------------------------------------------------------------
class Runtime:
    """The exporters one authz process runs: Prometheus endpoint, OTLP metrics and traces."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics_port = 0
        self._shutdowns: list[Callable[[], object]] = []
        self._tracer_provider: Any = None
        self._meter_provider_: Any = None

    def start(self) -> None:
        global _latency
        if _latency is None:
            _latency = {transport: Latency() for transport in TRANSPORTS}
        readers = self._readers()
        if readers:
            self._meter_provider(readers)
        if self.settings.otlp_endpoint:
            self._tracer_provider = tracing.start(self.settings, self._resource())

    def _readers(self) -> list[Any]:
        readers: list[Any] = []
        if self.settings.metrics_port:
            readers.append(self._prometheus())
        if self.settings.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            readers.append(
                PeriodicExportingMetricReader(
                    OTLPMetricExporter(endpoint=self.settings.otlp_endpoint), 10_000
                )
            )
        return readers

    def _prometheus(self) -> Any:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()  # private: several servers in one process never collide
        reader = PrometheusMetricReader(registry=registry)
        registry.register(_LatencyCollector())
        server, thread = start_http_server(
            self.settings.metrics_port, self.settings.metrics_host, registry
        )
        self.metrics_port = int(server.server_address[1])
        self._shutdowns.append(server.shutdown)
        self._shutdowns.append(server.server_close)
        del thread
        return reader

    def _meter_provider(self, readers: list[Any]) -> None:
        from opentelemetry.sdk.metrics import MeterProvider

        provider = MeterProvider(metric_readers=readers, resource=self._resource())
        self._shutdowns.insert(0, provider.shutdown)
        self._meter_provider_ = provider
        meter = provider.get_meter(METER_NAME)
        _declare_observables(meter)
        if self.settings.otlp_endpoint:
            _declare_latency_counters(meter)

    def _resource(self) -> Any:
        from opentelemetry.sdk.resources import Resource

        return Resource.create({"service.name": self.settings.service_name})

    def force_flush(self, metrics: bool = False) -> None:
        """Export buffered spans now (and metrics over OTLP when asked)."""
        if self._tracer_provider is not None:
            self._tracer_provider.force_flush()
        if metrics and self._meter_provider_ is not None:
            self._meter_provider_.force_flush()

    async def stop(self) -> None:
        global _latency
        _latency = None
        tracing.stop()
        if self._tracer_provider is not None:
            await asyncio.to_thread(self._tracer_provider.shutdown)
        for shutdown in self._shutdowns:
            await asyncio.to_thread(shutdown)


def _declare_observables(meter: Any) -> None:
    from opentelemetry.metrics import CallbackOptions, Observation

    def table(values: dict[Any, int], label: str) -> Callable[[CallbackOptions], Iterable[Any]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(count, {label: str(name)}) for name, count in values.items()]

        return observe

    def checks(_options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(
                count,
                {
                    "decision": "allow" if reason is Reason.ALLOWED else "deny",
                    "reason": reason.value,
                },
            )
            for reason, count in COUNTS.checks.items()
        ]

    def bcrypt(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(bcrypt_total())]

    declared: list[tuple[str, Any, str]] = [
        ("hokusai_checks", checks, "Checks by decision and reason"),
        ("hokusai_cache_hits", table(COUNTS.cache, "tier"), "Key lookups answered per tier"),
        ("hokusai_bcrypt_verifications", bcrypt, "bcrypt verifications run"),
        ("hokusai_store_errors", table(COUNTS.store_errors, "store"), "Store failures"),
        (
            "hokusai_rate_limit_decisions",
            table(COUNTS.rate_limit, "outcome"),
            "Rate-limit decisions by outcome",
        ),
        (
            "hokusai_access_log_batches",
            table(COUNTS.access_log, "result"),
            "Access-log entries flushed to Postgres or dropped",
        ),
        (
            "hokusai_auth_events",
            table(COUNTS.auth_events, "result"),
            "Authentication events written to Postgres or dropped",
        ),
    ]
    for name, callback, description in declared:
        meter.create_observable_counter(name, callbacks=[callback], description=description)


class _LatencyCollector:
    """``hokusai_check_duration_seconds`` on the Prometheus endpoint, from the bucket counts.

    The names, ``le`` values and labels are those the SDK's histogram had, so dashboards and
    ``histogram_quantile`` queries are unchanged.
    """

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import HistogramMetricFamily

        family = HistogramMetricFamily(
            "hokusai_check_duration_seconds",
            "Check latency inside authz",
            labels=["otel_scope_name", "otel_scope_schema_url", "otel_scope_version", "transport"],
        )
        for transport, latency in (_latency or {}).items():
            cumulative = list(accumulate(latency.counts))
            buckets = [
                (f"{bound}", count)
                for bound, count in zip(LATENCY_BUCKETS, cumulative[:-1], strict=True)
            ]
            buckets.append(("+Inf", cumulative[-1]))
            family.add_metric([METER_NAME, "", "", transport], buckets, latency.sum_ns / 1e9)
        yield family


def _declare_latency_counters(meter: Any) -> None:
    """OTLP's view of the latency buckets: counters (the API has no observable histogram)."""
    from opentelemetry.metrics import CallbackOptions, Observation

    labels = [f"{bound}" for bound in LATENCY_BUCKETS] + ["+Inf"]

    def buckets(_options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, {"transport": transport, "le": le})
            for transport, latency in (_latency or {}).items()
            for le, count in zip(labels, latency.counts, strict=True)
        ]

    def total(_options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(latency.sum_ns / 1e9, {"transport": transport})
            for transport, latency in (_latency or {}).items()
        ]

    meter.create_observable_counter(
        "hokusai_check_duration_bucket",
        callbacks=[buckets],
        description="Checks per latency bucket (upper bound le, s)",
    )
    meter.create_observable_counter(
        "hokusai_check_duration_sum",
        callbacks=[total],
        unit="s",
        description="Total Check latency inside authz",
    )


def start(settings: Settings) -> Runtime | None:
    """Start the exporters the settings ask for (call on the server's loop); None when none."""
    if not settings.metrics_port and not settings.otlp_endpoint:
        return None
    runtime = Runtime(settings)
    runtime.start()
    return runtime
