"""Telemetry of a real authz server: the Prometheus endpoint after real traffic, Check spans
received by an in-process OTLP/gRPC collector (sent straight and through a real Envoy), and the
redacting logs on the real code paths that log."""

from __future__ import annotations

import io
import logging
import secrets
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from authz.keys import format as keys
from authz.management.service import KeyService
from authz.settings import Settings
from authz.storage.db import connector
from authz.telemetry import logs
from authz.telemetry import metrics as telemetry
from bench import envoy as bench_envoy
from cli import envoy_config
from cli.servers import EnvoyServer, free_port
from tests.support.authz import GrpcCheckClient, RunningAuthz, http_check, poll, running_authz

pytestmark = pytest.mark.integration

BASE = Settings(bcrypt_cost=4, local_cache_ttl=0.2, negative_cache_ttl=5.0)
READ = "/api/mlflow/api/2.0/mlflow/experiments/get?experiment_id=0"


# --- an OTLP collector stand-in ------------------------------------------------------------
@dataclass
class Collector(
    trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer
):
    spans: list[Any] = field(default_factory=list)
    metric_names: set[str] = field(default_factory=set)

    def Export(self, request: Any, context: Any) -> Any:
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    self.spans.extend(scope.spans)
            return trace_service_pb2.ExportTraceServiceResponse()
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                self.metric_names.update(m.name for m in scope.metrics)
        return metrics_service_pb2.ExportMetricsServiceResponse()

    def span_in_trace(self, trace_id: str) -> Any:
        return next((s for s in self.spans if s.trace_id.hex() == trace_id), None)


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, int]]:
    found = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(found, server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(found, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield found, port
    server.stop(0)


@pytest.fixture
def observed(
    database_url: str, redis_url: str, collector: tuple[Collector, int]
) -> Iterator[tuple[RunningAuthz, KeyService]]:
    settings = BASE.replace(
        database_url=database_url,
        redis_url=redis_url,
        metrics_port=free_port(),
        otlp_endpoint=f"http://127.0.0.1:{collector[1]}",
    )
    with running_authz(settings) as authz:
        yield authz, KeyService(connector(database_url), BASE, "test:telemetry")


def traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def scrape(authz: RunningAuthz) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert authz.server.telemetry is not None
    port = authz.server.telemetry.metrics_port
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


# --- metrics -------------------------------------------------------------------------------
def test_prometheus_endpoint_reports_each_metric_after_traffic(
    observed: tuple[RunningAuthz, KeyService],
) -> None:
    authz, svc = observed
    _, new = svc.create_key(user_email="t@example.com", name="metrics", scopes=["mlflow:read"])
    before = scrape(authz)
    bearer = [("authorization", f"Bearer {new.token}")]
    client = GrpcCheckClient(authz.ports.grpc)
    try:
        client.check("GET", READ, bearer)  # postgres + bcrypt
        assert http_check(authz.ports.http, "GET", READ, bearer).status == 200  # local
        poll(lambda: authz.server.lookup.cached(new.parsed.key_id) is None, 5)
        client.check("GET", READ, bearer)  # redis (local expired)
        unknown = [("x-api-key", keys.generate("live").token)]
        client.check("GET", READ, unknown)
        client.check("GET", READ, unknown)  # negative
        client.check("GET", READ, [("authorization", "Bearer nope")])
    finally:
        client.close()
    telemetry.rate_limit_decision("over_limit")  # the RateLimitService's and ALS's hooks
    telemetry.accesslog_batch(flushed=3, dropped=1)

    def grew(name: str, by: float = 1, **labels: str) -> bool:
        return value(scrape(authz), name, **labels) - value(before, name, **labels) >= by

    poll(lambda: grew("hokusai_check_duration_seconds_count", 6), 10)
    assert grew("hokusai_checks_total", 3, decision="allow", reason="allowed")
    assert grew("hokusai_checks_total", 2, decision="deny", reason="unknown_key")
    assert grew("hokusai_checks_total", 1, reason="malformed_key")
    for tier in ("local", "redis", "postgres", "negative"):
        assert grew("hokusai_cache_hits_total", 1, tier=tier), tier
    assert grew("hokusai_bcrypt_verifications_total", 1)
    assert grew("hokusai_rate_limit_decisions_total", 1, outcome="over_limit")
    assert grew("hokusai_access_log_batches_total", 3, result="flushed")
    assert grew("hokusai_access_log_batches_total", 1, result="dropped")
    samples = scrape(authz)
    assert any(
        name == "hokusai_store_errors_total" and ("store", "postgres") in labels
        for name, labels in samples
    )
    # The warm path is microseconds: the smallest buckets (from 1 µs) are where checks land.
    fast = value(samples, "hokusai_check_duration_seconds_bucket", le="0.001024")
    assert fast >= 1
    assert not any(new.parsed.key_id in str(key) for key in samples)


def test_store_errors_are_counted(database_url: str) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    settings = BASE.replace(
        database_url=database_url, redis_url=dead_redis, metrics_port=free_port()
    )
    before = telemetry.COUNTS.store_errors["redis"]
    with running_authz(settings) as authz:
        client = GrpcCheckClient(authz.ports.grpc)
        try:
            client.check("GET", READ, [("x-api-key", keys.generate("live").token)])
        finally:
            client.close()
        poll(lambda: value(scrape(authz), "hokusai_store_errors_total", store="redis") > before, 5)


# --- traces --------------------------------------------------------------------------------
def test_check_spans_join_the_callers_trace_on_both_transports(
    observed: tuple[RunningAuthz, KeyService], collector: tuple[Collector, int]
) -> None:
    authz, _ = observed
    grpc_parent, grpc_trace, grpc_span = traceparent()
    http_parent, http_trace, _ = traceparent()
    client = GrpcCheckClient(authz.ports.grpc)
    try:
        client.check("GET", READ, [("traceparent", grpc_parent)])
    finally:
        client.close()
    http_check(authz.ports.http, "GET", READ, [("traceparent", http_parent)])
    authz.call(lambda: _flush(authz))
    found, _ = collector
    poll(
        lambda: (
            found.span_in_trace(grpc_trace) is not None
            and found.span_in_trace(http_trace) is not None
        ),
        10,
    )
    span = found.span_in_trace(grpc_trace)
    assert span.name == "Check" and span.parent_span_id.hex() == grpc_span
    attributes = {a.key: a.value.string_value for a in span.attributes}
    assert attributes["hokusai.reason"] == "missing_key"
    assert attributes["hokusai.transport"] == "grpc"
    poll(lambda: "hokusai_checks" in found.metric_names or _flush_metrics(authz), 15)


async def _flush(authz: RunningAuthz) -> None:
    assert authz.server.telemetry is not None
    authz.server.telemetry.force_flush()


def _flush_metrics(authz: RunningAuthz) -> bool:
    assert authz.server.telemetry is not None
    authz.server.telemetry.force_flush(metrics=True)
    return False


class _Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_check_span_trace_id_matches_the_traceparent_sent_through_envoy(
    observed: tuple[RunningAuthz, KeyService],
    collector: tuple[Collector, int],
    tmp_path: Path,
    transport: str,
) -> None:
    authz, svc = observed
    _, new = svc.create_key(user_email="e@example.com", name="trace", scopes=["mlflow:read"])
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port, admin = free_port(), free_port()
    address = authz.ports.grpc if transport == "grpc" else authz.ports.http
    config = bench_envoy.render_bench(
        f"ext_authz_{transport}",  # type: ignore[arg-type]
        port=port,
        admin_port=admin,
        upstream=envoy_config.Endpoint("127.0.0.1", upstream.server_address[1]),
        authz=envoy_config.Endpoint("127.0.0.1", address),
    )
    path = envoy_config.write(config, tmp_path / "envoy.yaml")
    parent, trace_id, span_id = traceparent()
    try:
        with EnvoyServer(path, admin, tmp_path):
            answer = httpx.get(
                f"http://127.0.0.1:{port}{READ}",
                timeout=10,
                headers={"authorization": f"Bearer {new.token}", "traceparent": parent},
            )
            assert answer.status_code == 200
    finally:
        upstream.shutdown()
        upstream.server_close()
    authz.call(lambda: _flush(authz))
    found, _ = collector
    poll(lambda: found.span_in_trace(trace_id) is not None, 10)
    span = found.span_in_trace(trace_id)
    assert span.parent_span_id.hex() == span_id
    assert {a.key: a.value.string_value for a in span.attributes}["hokusai.reason"] == "allowed"


# --- logs ----------------------------------------------------------------------------------
def test_every_log_call_path_is_redacted(database_url: str) -> None:
    """Trigger each ``log.`` call in authz with key material in reach, capture the real
    handler's output, and find no key byte in it."""
    stream = io.StringIO()
    handler = logs.log_handler(BASE, stream)
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.DEBUG)
    token = keys.generate("live").token
    try:
        dead = f"redis://127.0.0.1:{free_port()}/0"
        settings = BASE.replace(database_url=database_url, redis_url=dead)
        with running_authz(settings) as authz:  # server: serving/draining; cache: redis down
            client = GrpcCheckClient(authz.ports.grpc)
            try:
                client.check("GET", READ, [("authorization", f"Bearer {token}")])
            finally:
                client.close()
            http_check(authz.ports.http, "GET", f"{READ}&api_key={token}", [])
        logging.getLogger("authz.check").error(
            "check failed for %s", token, extra={"error": "ValueError", "header": token}
        )
        try:
            raise ValueError(f"bad key {token}")
        except ValueError:
            logging.getLogger("authz.check").exception("check failed")
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    output = stream.getvalue()
    assert "redis unavailable" in output and "check failed" in output
    assert token not in output and keys.parse(token) is not None
    assert keys.parse(token).secret not in output  # type: ignore[union-attr]
    assert "[REDACTED]" in output
