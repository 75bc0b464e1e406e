"""In-process microbenchmarks of the check path (no sockets): ``python -m bench.micro``.

* warm gRPC Check: CheckRequest bytes → ``CheckService.check`` → CheckResponse bytes;
* warm HTTP Check: raw request bytes → ``CheckProtocol.data_received`` → response bytes;
* cold Check: record from a real Postgres + one bcrypt at the default cost (caches dropped);
* the rate-limit decisions alone (approximate; exact: a token from the lease pool) and one usage
  (access-log) entry aggregated;
* both warm Checks again with the limit decided inside the Check (HOKUSAI_RATE_LIMIT_ENFORCEMENT=
  check, the default), headers included: ``_in_check_limit`` with the approximate limiter,
  ``_in_check_exact`` with the exact one (leases on an in-memory bucket: a refill's arithmetic
  runs between batches, untimed; the Redis round trip of a refill, about one per 40 requests of
  a hot key, is not in these figures).
* a warm HTTP denial (a revoked key) with authentication events off and on
  (``warm_http_denial_us``, ``warm_http_denial_event_us``: the event is one append) and the
  events' flush work per event (``event_flush_us``: grouping a second's identical events);
* both warm Checks of a browser session (``warm_*_check_session``: the UI's fetch with the
  session cookie and its Sec-Fetch-* headers, the session and its key in the in-process caches);
* a cold session lookup (local cache dropped) answered by Redis and by Postgres (p50 ms).

Warm figures are the median over batches of the CPU time of this thread per call (µs; CPU time,
not wall time, so other work on a shared machine hardly moves them); ``*_metrics_on`` is the same
with the Prometheus endpoint on (the check's latency counted in its bucket). Cold is p50/p99 of
wall time (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

from envoy.config.core.v3.address_pb2 import Address, SocketAddress
from envoy.service.auth.v3 import attribute_context_pb2 as ac
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from authz.check.checker import CheckInput
from authz.check.credentials import CredentialSources
from authz.keys import format as key_format
from authz.keys.record import KeyRecord
from authz.server import AuthzServer, session_lookup
from authz.sessions import cookie
from authz.sessions.record import SessionRecord
from authz.settings import Settings
from authz.storage.store import MemoryKeyStore
from authz.transports.http import CheckProtocol

PATH = "/api/mlflow/api/2.0/mlflow/experiments/get?experiment_id=0"
UI_PATH = "/api/mlflow/ajax-api/2.0/mlflow/experiments/search?max_results=25"
HOST = "gateway.example:8443"
BATCH, BATCHES = 2000, 7


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never suspends (a warm check) without the event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("the warm check suspended: the cache is not warm")


def per_call_us(fn: Callable[[], object], batch: int = BATCH, batches: int = BATCHES) -> float:
    """Median over batches of the mean CPU µs (this thread) per call."""
    results = []
    for _ in range(batches):
        start = time.thread_time_ns()
        for _ in range(batch):
            fn()
        results.append((time.thread_time_ns() - start) / batch / 1000)
    return statistics.median(results)


def browser_headers(session_id: str) -> dict[str, str]:
    """What Envoy passes on for the MLflow UI's own fetch (allowed_headers only)."""
    return {
        "cookie": f"{cookie.COOKIE_NAME}={session_id}",
        "sec-fetch-site": "same-origin",
        "sec-fetch-mode": "cors",
        "sec-fetch-dest": "empty",
        "content-type": "application/json; charset=utf-8",
    }


def grpc_request(token: str, session_id: str | None = None) -> bytes:
    path = PATH if session_id is None else UI_PATH
    credential = (
        {"authorization": f"Bearer {token}"} if session_id is None else browser_headers(session_id)
    )
    http = ac.AttributeContext.HttpRequest(
        method="GET",
        path=path,
        query=path.partition("?")[2],
        protocol="HTTP/1.1",
        host="127.0.0.1:8080" if session_id is None else HOST,
        headers={
            ":authority": "127.0.0.1:8080",
            ":method": "GET",
            ":path": path,
            ":scheme": "http",
            **credential,
            "user-agent": "wrk",
            "x-forwarded-for": "192.0.2.1",
            "x-forwarded-proto": "http",
            "x-request-id": "1b4f0e98-5cd1-4c2a-9cd2",
        },
    )
    peer = ac.AttributeContext.Peer(
        address=Address(socket_address=SocketAddress(address="127.0.0.1", port_value=40000))
    )
    encoded: bytes = CheckRequest(
        attributes=ac.AttributeContext(source=peer, request=ac.AttributeContext.Request(http=http))
    ).SerializeToString()
    return encoded


def http_request(token: str, session_id: str | None = None) -> bytes:
    if session_id is not None:
        lines = "".join(f"{k}: {v}\r\n" for k, v in browser_headers(session_id).items())
        return (
            f"GET /check{UI_PATH} HTTP/1.1\r\nhost: {HOST}\r\n{lines}"
            "x-forwarded-for: 192.0.2.1\r\n"
            "x-request-id: 1b4f0e98-5cd1-4c2a-9cd2\r\ncontent-length: 0\r\n\r\n"
        ).encode()
    return (
        f"GET /check{PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"authorization: Bearer {token}\r\nx-forwarded-for: 192.0.2.1\r\n"
        "x-request-id: 1b4f0e98-5cd1-4c2a-9cd2\r\ncontent-length: 0\r\n\r\n"
    ).encode()


class SinkTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.last = b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.last = bytes(data)

    def close(self) -> None:
        pass


def make_record(key: key_format.NewKey, cost: int) -> KeyRecord:
    import ipaddress

    return KeyRecord(
        key_id=key.parsed.key_id,
        user_id=1,
        env="live",
        secret_hash=key_format.hash_secret(key.parsed.secret, cost),
        scopes=frozenset({"mlflow:read", "mlflow:write"}),
        expires_at=None,
        revoked_at=None,
        networks=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("192.0.2.0/24")),
        rate_limit_per_hour=1_000_000,
        burst=1000,
        version=1,
    )


async def warm(settings: Settings) -> dict[str, float]:
    key = key_format.generate("live")
    unlimited = settings.replace(rate_limit_enforcement="envoy")  # no in-Check phase 8
    server = AuthzServer(unlimited, store=MemoryKeyStore([make_record(key, 4)]))
    results = await warm_transports(server, key.token, "")
    results.update(await warm_metrics_on(unlimited))
    results.update(optional_parts(key.parsed.key_id))
    # The limit decided inside the Check (approximate, no Redis: the decision itself), with
    # the x-ratelimit-* headers appended to the cached responses. A limit that never runs out.
    limited = key_format.generate("live")
    record = dataclasses.replace(
        make_record(limited, 4), rate_limit_per_hour=1_000_000_000, burst=10_000_000
    )
    in_check = AuthzServer(
        settings.replace(
            rate_limit_enforcement="check", rate_limit_mode="approximate", redis_url=""
        ),
        store=MemoryKeyStore([record]),
    )
    results.update(await warm_transports(in_check, limited.token, "_in_check_limit"))
    exact = AuthzServer(
        settings.replace(rate_limit_enforcement="check", rate_limit_mode="exact", redis_url=""),
        store=MemoryKeyStore([record]),
    )
    assert exact.checker.limits is not None
    exact.checker.limits.limiter = leases_in_memory()
    results.update(await warm_transports(exact, limited.token, "_in_check_exact"))
    results["lease_decision_us"] = await lease_decision(limited.parsed.key_id)
    results.update(await warm_denials(settings))
    results.update(await warm_sessions(settings))
    return results


async def warm_denials(settings: Settings) -> dict[str, float]:
    """A revoked key's warm HTTP check, events off and on; then the flush's grouping per event."""
    key = key_format.generate("live")
    record = dataclasses.replace(make_record(key, 4), revoked_at=1.0)
    results: dict[str, float] = {}
    for name, queue in (("warm_http_denial_us", 0), ("warm_http_denial_event_us", 1_000_000)):
        server = AuthzServer(
            settings.replace(events_queue_size=queue), store=MemoryKeyStore([record])
        )
        protocol, sink = CheckProtocol(server.http), SinkTransport()
        protocol.connection_made(sink)
        request = http_request(key.token)
        protocol.data_received(request)  # cold: the record and one bcrypt
        await asyncio.sleep(0.05)
        protocol.data_received(request)
        assert sink.last.startswith(b"HTTP/1.1 401"), sink.last[:40]
        results[name] = per_call_us(partial(protocol.data_received, request))
        protocol.connection_lost(None)
        if queue:
            batch = dict(server.events._pending)
            events = sum(batch.values())
            assert events >= BATCH * BATCHES, events
            start = time.thread_time_ns()
            server.events._rows(batch)
            results["event_flush_us"] = (time.thread_time_ns() - start) / events / 1000
    return results


async def lease_decision(key_id: str) -> float:
    """The exact limiter's no-I/O decision: a token from the key's pool (refills between)."""
    from authz.ratelimit.gcra import Limit

    limiter, limit = leases_in_memory(), Limit(per_hour=1_000_000_000, burst=1_000_000)
    await limiter.decide(key_id, limit)
    await settle()
    return await per_call_yielding(lambda: limiter.decide_now(key_id, limit))


def leases_in_memory() -> Any:
    """The exact limiter on the in-memory bucket (the same arithmetic as the Redis script)."""
    from authz.ratelimit.lease_bucket import MemoryLeaseStore
    from authz.ratelimit.leases import LeaseLimiter

    return LeaseLimiter(MemoryLeaseStore(lambda: time.monotonic_ns() // 1000))


def session_record(session_id: str, key: KeyRecord) -> SessionRecord:
    return SessionRecord.started(
        cookie.id_hash(session_id),
        key.key_id,
        key.user_id,
        time.time(),
        idle=8 * 3600.0,
        lifetime=86400.0,
    )


async def warm_sessions(settings: Settings) -> dict[str, float]:
    """The warm Checks of a browser session: the MLflow UI's fetch with its session cookie."""
    key = key_format.generate("live")
    # The shipped defaults limit in the Check (exact mode: leases, here on the in-memory
    # bucket); a limit that never runs out, like the in-Check figures'.
    record = dataclasses.replace(
        make_record(key, 4), rate_limit_per_hour=1_000_000_000, burst=10_000_000
    )
    session_id = cookie.new_session_id()
    store = MemoryKeyStore([record], [session_record(session_id, record)])
    server = AuthzServer(settings, store=store)
    if server.checker.limits is not None and settings.rate_limit_mode == "exact":
        server.checker.limits.limiter = leases_in_memory()
    return await warm_transports(server, key.token, "_session", session_id)


async def warm_metrics_on(settings: Settings) -> dict[str, float]:
    """The warm Checks with telemetry exporting (Prometheus endpoint on a free port)."""
    from authz.telemetry import metrics
    from cli.servers import free_port

    key = key_format.generate("live")
    metered = settings.replace(metrics_port=free_port())
    server = AuthzServer(metered, store=MemoryKeyStore([make_record(key, 4)]))
    runtime = metrics.start(metered)
    try:
        return await warm_transports(server, key.token, "_metrics_on")
    finally:
        if runtime is not None:
            await runtime.stop()


async def warm_transports(
    server: AuthzServer, token: str, suffix: str, session_id: str | None = None
) -> dict[str, float]:
    """Warm µs per Check on both transports: first one cold (fills the caches), then batches.
    With ``session_id``, the request is a browser's with that session instead of the key."""
    raw = grpc_request(token, session_id)
    service = server.check_service
    first = await service.check(CheckRequest.FromString(raw), None)  # type: ignore[arg-type]
    for _ in range(50):  # a hot key: the exact limiter leases its tokens from here on
        await service.check(CheckRequest.FromString(raw), None)  # type: ignore[arg-type]
        await settle()
    again = run_sync(service.check(CheckRequest.FromString(raw), None))  # type: ignore[arg-type]
    assert CheckResponse.FromString(again).HasField("ok_response"), again[:40]
    if server.checker.limits is None:
        assert first == again
    results = {
        f"warm_grpc_check{suffix}_us": await per_call_yielding(
            lambda: run_sync(service.check(CheckRequest.FromString(raw), None))  # type: ignore[arg-type]
        )
    }
    protocol, sink = CheckProtocol(server.http), SinkTransport()
    protocol.connection_made(sink)
    request = http_request(token, session_id)
    protocol.data_received(request)
    assert sink.last.startswith(b"HTTP/1.1 200"), sink.last[:40]
    results[f"warm_http_check{suffix}_us"] = await per_call_yielding(
        lambda: protocol.data_received(request)
    )
    protocol.connection_lost(None)
    return results


async def settle() -> None:
    """Let background work the checks started (a lease refill) run; untimed."""
    for _ in range(3):
        await asyncio.sleep(0)


async def per_call_yielding(
    fn: Callable[[], object], every: int = 10, batches: int = BATCHES
) -> float:
    """``per_call_us`` in slices of ``every`` calls with the loop let run between them (untimed),
    so the exact limiter's pool is refilled as it would be by a server's loop."""
    results = []
    for _ in range(batches):
        spent = 0
        for _ in range(BATCH // every):
            start = time.thread_time_ns()
            for _ in range(every):
                fn()
            spent += time.thread_time_ns() - start
            await settle()
        results.append(spent / (BATCH // every * every) / 1000)
    return statistics.median(results)


def optional_parts(key_id: str) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        from authz.ratelimit.gcra import Limit
        from authz.ratelimit.limiters import ApproximateLimiter

        limiter = ApproximateLimiter(None, 1.0)
        limit = Limit(per_hour=1_000_000_000, burst=1_000_000)
        out["rate_limit_decision_us"] = per_call_us(lambda: limiter.decide_now(key_id, limit))
    except (ImportError, TypeError, AttributeError) as exc:
        print(f"micro: rate-limit decision skipped ({type(exc).__name__}: not built yet?)")
    try:
        from authz.usage.rollups import UsageAggregator, UsageEvent

        usage = UsageAggregator("postgresql://unused")
        event = UsageEvent(
            key_id=key_id,
            at=time.time(),
            route="/api/2.0/mlflow/experiments/get",
            method="GET",
            status=200,
            latency_ms=1.7,
        )
        out["usage_record_us"] = per_call_us(lambda: usage.record(event))
    except (ImportError, TypeError, AttributeError) as exc:
        print(f"micro: usage aggregation skipped ({type(exc).__name__}: not built yet?)")
    out.update(access_log_entry(key_id))
    return out


def access_log_entry(key_id: str, batch: int = 30) -> dict[str, float]:
    """The usage pipeline's per-request cost in authz: one ALS entry as Envoy sends it (in a
    message of ``batch`` entries) decoded and aggregated, µs per entry."""
    from envoy.data.accesslog.v3 import accesslog_pb2 as al
    from envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage
    from google.protobuf.struct_pb2 import Struct

    from authz.transports import wire
    from authz.transports.accesslog import AccessLogService
    from authz.usage.rollups import UsageAggregator

    metadata = Struct()
    metadata.update({wire.KEY_ID_HEADER: key_id, wire.USER_ID_HEADER: "1"})
    common = al.AccessLogCommon(
        downstream_remote_address=Address(
            socket_address=SocketAddress(address="127.0.0.1", port_value=40000)
        )
    )
    common.metadata.filter_metadata[wire.METADATA_NAMESPACE].CopyFrom(metadata)
    common.start_time.GetCurrentTime()
    common.duration.FromMicroseconds(1700)
    entry = al.HTTPAccessLogEntry(
        common_properties=common,
        request=al.HTTPRequestProperties(
            request_method=1, path=PATH, authority="127.0.0.1", request_id="1b4f0e98-5cd1-4c2a-9cd2"
        ),
        response=al.HTTPResponseProperties(response_body_bytes=14),
    )
    entry.response.response_code.value = 200
    message = StreamAccessLogsMessage()
    message.http_logs.log_entry.extend([entry] * batch)
    raw = message.SerializeToString()
    service = AccessLogService(UsageAggregator("postgresql://unused"))
    per_message = per_call_us(lambda: service.consume(raw), batch=200)  # it decodes
    return {"access_log_entry_us": per_message / batch}


async def cold(settings: Settings, database_url: str, samples: int) -> dict[str, float]:
    """Local cache and verifier memory dropped before each check: Postgres + bcrypt every time."""
    from authz.management.service import open_key_service
    from authz.storage.migrations import migrate

    migrate(database_url)
    service = open_key_service(database_url, settings, "bench")
    _, key = service.create_key(
        user_email="micro@example.com", name="cold", allowed_ips=["127.0.0.0/8"]
    )
    server = AuthzServer(settings.replace(database_url=database_url, redis_url=""))
    check_input = CheckInput(
        "GET",
        PATH,
        CredentialSources(authorization=f"Bearer {key.token}", api_key_header=None, query=""),
        "127.0.0.1",
    )
    times = []
    try:
        for _ in range(samples):
            server.lookup.local.drop(key.parsed.key_id)
            server.verifier.forget(key.parsed.key_id)
            start = time.perf_counter()
            decision = await server.checker.check(check_input)
            times.append((time.perf_counter() - start) * 1000)
            assert decision.allowed, decision.reason
    finally:
        server.verifier.close()
        await server.store.close()
    times.sort()
    return {
        "cold_check_p50_ms": statistics.median(times),
        "cold_check_p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
        "bcrypt_cost": settings.bcrypt_cost,
    }


async def cold_sessions(
    settings: Settings, database_url: str, redis_url: str, samples: int
) -> dict[str, float]:
    """A session's record with the in-process cache dropped: from Redis, and from Postgres
    (``reload`` skips Redis). The question of issue 13: where should sessions live?"""
    from authz.management.service import open_key_service
    from authz.management.sessions import SessionService
    from authz.storage.db import connector

    configured = settings.replace(database_url=database_url, redis_url=redis_url)
    keys = open_key_service(database_url, configured, "bench")
    view, _ = keys.create_key(user_email="micro@example.com", name="session")
    started = SessionService(connector(database_url), configured).start(
        view.key_id, view.user_id, "127.0.0.1", "bench"
    )
    id_hash = cookie.id_hash(started.session_id)
    server = AuthzServer(configured)
    lookup = session_lookup(server.checker)
    timings: dict[str, list[float]] = {"redis": [], "postgres": []}
    try:
        await lookup.reload(id_hash)  # fills Redis (in the background)
        await asyncio.sleep(0.2)
        for _ in range(samples):
            for tier, load in (("redis", lookup.get), ("postgres", lookup.reload)):
                lookup.local.drop(id_hash)
                start = time.perf_counter()
                found = await load(id_hash)
                timings[tier].append((time.perf_counter() - start) * 1000)
                assert isinstance(found, SessionRecord), found
    finally:
        server.verifier.close()
        if server.redis is not None:
            await server.redis.aclose()
        await server.store.close()
    return {
        "cold_session_redis_p50_ms": statistics.median(timings["redis"]),
        "cold_session_postgres_p50_ms": statistics.median(timings["postgres"]),
    }


def run(database_url: str | None, samples: int) -> dict[str, float]:
    settings = Settings()  # shipped defaults (bcrypt cost included)
    results = asyncio.run(warm(settings))
    from cli.servers import PostgresServer, RedisServer

    with (
        tempfile.TemporaryDirectory(prefix="hokusai-micro-") as tmp,
        RedisServer(Path(tmp) / "redis") as redis,
    ):
        if database_url:
            results.update(asyncio.run(cold(settings, database_url, samples)))
            results.update(asyncio.run(cold_sessions(settings, database_url, redis.url, samples)))
            return results
        with PostgresServer(Path(tmp) / "pg", fast=True) as pg:
            results.update(asyncio.run(cold(settings, pg.url, samples)))
            results.update(asyncio.run(cold_sessions(settings, pg.url, redis.url, samples)))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.micro", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--database-url", help="an existing Postgres (else one is started)")
    parser.add_argument("--cold-samples", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = run(args.database_url, args.cold_samples)
    for name, value in results.items():
        print(f"{name:28} {value:10.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
