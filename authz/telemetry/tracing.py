"""Check spans: one ``Check`` span per check, child of the W3C ``traceparent`` Envoy forwarded
(it is in ``allowed_headers``), created when the decision is known with the check's real start
time. With no OTLP endpoint there is no tracer and no span work at all.
"""

from __future__ import annotations

import time
from typing import Any

from authz.check.reasons import Reason
from authz.settings import Settings

SCOPE_NAME = "hokusai.authz"
tracer: Any = None  # an opentelemetry Tracer while an OTLP endpoint is configured


def check_span(reason: Reason, started_ns: int, transport: str, carrier: Any) -> None:
    """The span of one finished check. ``carrier`` holds the request's trace context: the HTTP
    transport's header dict, or the gRPC ``CheckRequest`` (its headers are looked up only here,
    so the warm path never touches the protobuf map for nothing)."""
    headers = (
        carrier
        if isinstance(carrier, dict) or carrier is None
        else carrier.attributes.request.http.headers
    )
    headers = headers or {}
    _span(reason, started_ns, transport, headers.get("traceparent"), headers.get("tracestate"))


def _span(
    reason: Reason, started_ns: int, transport: str, traceparent: str | None, tracestate: str | None
) -> None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {"traceparent": traceparent or ""}
    if tracestate:
        carrier["tracestate"] = tracestate
    parent = TraceContextTextMapPropagator().extract(carrier) if traceparent else None
    end = time.time_ns()
    start = end - (time.perf_counter_ns() - started_ns)
    span = tracer.start_span(
        "Check",
        context=parent,
        start_time=start,
        attributes={
            "hokusai.reason": reason.value,
            "hokusai.transport": transport,
            "hokusai.decision": "allow" if reason is Reason.ALLOWED else "deny",
        },
    )
    span.end(end_time=end)


def start(settings: Settings, resource: Any) -> Any:
    """Export spans over OTLP; returns the tracer provider (flushed and shut down by its owner)."""
    global tracer
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=resource)
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=settings.otlp_endpoint), schedule_delay_millis=500
        )
    )
    tracer = provider.get_tracer(SCOPE_NAME)
    return provider


def stop() -> None:
    global tracer
    tracer = None
