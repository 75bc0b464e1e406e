"""The authz process: builds every part from the settings, serves, and shuts down in order.

Start: stores and caches, then the invalidation listener (caches are only trusted once it
listens), then the gRPC and HTTP servers, then health turns SERVING. SIGTERM: health turns
NOT_SERVING, in-flight work drains for the grace period, batches are flushed, and pools close in
reverse order of creation.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from authz.check.checker import Decision
from authz.keys.record import KeyRecord
from authz.pipeline import build_checker, build_listener, build_redis, build_store
from authz.ratelimit.limiters import KeyLimits, Limit, build_limiter
from authz.settings import Settings, SettingsError
from authz.storage.lastused import LastUsedRecorder
from authz.storage.redis import redis_client
from authz.storage.store import KeyStore
from authz.telemetry import metrics
from authz.transports.accesslog import AccessLogService
from authz.transports.grpc import CheckService, GrpcServer
from authz.transports.http import HttpCheckServer
from authz.transports.ratelimit_service import RateLimitService
from authz.usage.rollups import UsageAggregator

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ports:
    grpc: int
    http: int


class AuthzServer:
    """Everything one authz instance runs; services receive their dependencies from here."""

    def __init__(self, settings: Settings, store: KeyStore | None = None) -> None:
        if not settings.database_url and store is None:
            raise SettingsError("HOKUSAI_DATABASE_URL: required to run the authz server")
        self.settings = settings
        self.store = store or build_store(settings)
        self.redis_client = redis_client(settings)  # one pool: the record cache and the limiter
        self.redis = build_redis(self.redis_client, settings)
        self.checker = build_checker(settings, self.store, self.redis, on_allowed=self._allowed)
        self.lookup, self.verifier = self.checker.lookup, self.checker.verifier
        self.local = self.lookup.local
        self.last_used = LastUsedRecorder(self.store, settings.last_used_interval)
        self.decision_hooks: list[Callable[[Decision], None]] = []
        self.allowed_hooks: list[Callable[[KeyRecord], None]] = []
        self.grpc = GrpcServer()
        self.check_service = CheckService(
            self.checker, settings.trusted_hops, settings.docs_base_url, self._decided
        )
        self.grpc.add_handlers(self.check_service.handler())
        # Per-key rate limits and usage rollups (Envoy's RateLimitService and AccessLogService).
        self.limiter = build_limiter(
            self.redis_client,
            settings.rate_limit_mode,
            settings.rate_limit_sync_interval,
            settings.rate_limit_redis_down,
        )
        self.rate_limits = RateLimitService(
            self.limiter,
            self.lookup,
            Limit(settings.rate_limit_default, settings.rate_limit_default_burst),
            settings.docs_base_url,
        )
        if settings.rate_limit_enforcement == "check":  # phase 8 of the Check (authz/check.py)
            self.checker.limits = KeyLimits(
                self.limiter, Limit(settings.rate_limit_default, settings.rate_limit_default_burst)
            )
        self.usage = UsageAggregator(settings.database_url)
        self.access_log = AccessLogService(self.usage)
        self.grpc.add_handlers(self.rate_limits.handler(), self.access_log.handler())
        self.http = HttpCheckServer(
            self.checker,
            settings.trusted_hops,
            settings.docs_base_url,
            serving=lambda: self.serving,
            on_decision=self._decided,
        )
        self.listener = build_listener(settings, self.checker)
        self.serving = False
        self._tasks: list[asyncio.Task[None]] = []
        self.telemetry: metrics.Runtime | None = None  # exporters, when the settings ask
        self._unobserve = metrics.observe_bcrypt(lambda: self.verifier.bcrypt_runs)

    def _allowed(self, record: KeyRecord) -> None:
        self.last_used.seen(record)
        for hook in self.allowed_hooks:
            hook(record)

    def _decided(self, decision: Decision) -> None:
        for hook in self.decision_hooks:
            hook(decision)

    def add_grpc_handlers(self, *handlers: grpc.GenericRpcHandler) -> None:
        self.grpc.add_handlers(*handlers)

    async def start(self, listen_timeout: float = 10.0) -> Ports:
        loop = asyncio.get_running_loop()
        if self.listener is not None:
            self._tasks.append(loop.create_task(self.listener.run()))
            try:
                await asyncio.wait_for(self.listener.connected.wait(), listen_timeout)
            except TimeoutError:
                log.warning("starting without cache invalidation: database not reachable")
        self._tasks.append(loop.create_task(self.last_used.run()))
        self._tasks.append(loop.create_task(self.limiter.run()))
        self._tasks.append(loop.create_task(self.usage.run(self.settings.usage_flush_interval)))
        self.telemetry = metrics.start(self.settings)
        grpc_port = await self.grpc.start(self.settings.grpc_host, self.settings.grpc_port)
        http_port = await self.http.start(
            self.settings.http_check_host, self.settings.http_check_port
        )
        self.serving = True
        await self.grpc.set_serving(True)
        return Ports(grpc_port, http_port)

    async def stop(self, grace: float = 5.0) -> None:
        self.serving = False
        await self.grpc.set_serving(False)
        await self.http.stop()
        await self.grpc.stop(grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.last_used.flush()
        await self.usage.flush()  # the access-log streams have ended: nothing more arrives
        await self.limiter.close()
        if self.telemetry is not None:
            await self.telemetry.stop()
        self._unobserve()
        self.verifier.close()
        if self.redis_client is not None:
            await self.redis_client.aclose()
        await self.store.close()


async def serve(settings: Settings, drain: float = 5.0) -> None:
    server = AuthzServer(settings)
    ports = await server.start()
    log.info("authz serving", extra={"grpc_port": ports.grpc, "http_port": ports.http})
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("authz draining")
    await server.stop(drain)


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"hokusai authz: {exc}", file=sys.stderr)
        return 2
    metrics.configure_logging(settings)
    try:
        asyncio.run(serve(settings))
    except SettingsError as exc:
        print(f"hokusai authz: {exc}", file=sys.stderr)
        return 2
    return 0
