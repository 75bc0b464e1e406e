"""The authz process, and every part of it built from the settings in one place.

The builders at the top (``build_store``, ``build_checker``, ``build_listener``) are also what the
keys REST API's runtime (``authz.api.runtime``) calls: both processes authenticate with a
``Checker`` wired here, so the caches, the verifier and the invalidation wiring are written once.
Each process builds its own: caches and fingerprints live in-process, Redis and Postgres are
shared.

``AuthzServer`` builds its parts and starts nothing: constructing one opens no socket, starts no
thread and registers nothing process-wide. Start: the invalidation listener first (caches are
only trusted once it listens), the background batches, the exporters, then the gRPC and HTTP
servers, then health turns SERVING. SIGTERM: health turns NOT_SERVING, in-flight work drains for
the grace period, batches are flushed, and clients close in reverse order of creation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from authz.check.checker import Checker, CheckInput, CheckPolicy, Decision
from authz.check.sessions import SessionCheck
from authz.check.verify import SecretVerifier
from authz.errors import StoreUnavailable
from authz.events.recorder import EventRecorder
from authz.events.webhook import INTERVAL as WEBHOOK_INTERVAL
from authz.events.webhook import ExpiryNotifier
from authz.keys.record import KeyRecord
from authz.ratelimit.gcra import Limit
from authz.ratelimit.limiters import KeyLimits, build_limiter
from authz.sessions.record import SessionRecord
from authz.settings import Settings, SettingsError
from authz.storage import policy as policy_sql
from authz.storage.cache import KEY_CODEC, SESSION_CODEC, Codec, LocalCache, R, RedisCache
from authz.storage.invalidation import CHANNEL, SESSIONS_CHANNEL, InvalidationListener
from authz.storage.lastused import LastUsedRecorder
from authz.storage.lookup import RecordLookup
from authz.storage.redis import redis_client
from authz.storage.store import KeyStore, PostgresKeyStore, RecordSource, SessionRecords
from authz.telemetry import logs, metrics
from authz.transports.accesslog import AccessLogService
from authz.transports.grpc import CheckService, GrpcServer
from authz.transports.http import HttpCheckServer
from authz.transports.ratelimit_service import RateLimitService
from authz.usage.rollups import UsageAggregator

log = logging.getLogger(__name__)


# --- the check pipeline, for every process that checks keys -----------------------------------


def build_store(settings: Settings) -> KeyStore:
    if not settings.database_url:
        raise SettingsError("HOKUSAI_DATABASE_URL: required to validate keys")
    return PostgresKeyStore(
        settings.database_url, settings.database_pool_size, settings.database_timeout
    )


def build_checker(
    settings: Settings,
    store: KeyStore,
    redis: aioredis.Redis | None,
    *,
    on_allowed: Callable[[KeyRecord], None] = lambda _r: None,
    limits: KeyLimits | None = None,
    last_seen: LastUsedRecorder | None = None,
    on_denied: Callable[[Decision, CheckInput], None] | None = None,
) -> Checker:
    """The check pipeline: local cache → Redis → store for key records and for session records,
    bcrypt verifier, check policy, and the in-Check rate limit (phase 8) when ``limits`` is
    given; denials with a key id (a key's, or a session's key) go to ``on_denied`` (the events
    recorder)."""
    lookup = build_lookup(settings, store, redis, KEY_CODEC)
    # Without a configured pepper, fingerprints are only meaningful inside this process.
    pepper = settings.pepper.encode() if settings.pepper else os.urandom(32)
    verifier = SecretVerifier(pepper, settings.bcrypt_threads, dummy_cost=settings.bcrypt_cost)
    policy = CheckPolicy(settings.accepted_envs, settings.query_param_enabled)
    sessions = SessionCheck(
        build_lookup(settings, SessionRecords(store), redis, SESSION_CODEC),
        last_seen or session_activity(settings, store),
    )
    return Checker(
        policy,
        lookup,
        verifier,
        on_allowed=on_allowed,
        limits=limits,
        sessions=sessions,
        on_denied=on_denied,
    )


def build_lookup(
    settings: Settings, source: RecordSource[R], redis: aioredis.Redis | None, codec: Codec[R]
) -> RecordLookup[R]:
    """One record kind's tiers: in-process cache → Redis (when configured) → ``source``."""
    local: LocalCache[R] = LocalCache(
        settings.local_cache_ttl,
        settings.negative_cache_ttl,
        settings.stale_window,
        settings.local_cache_size,
    )
    shared = None if redis is None else RedisCache(redis, settings.redis_cache_ttl, codec)
    return RecordLookup(local, shared, source, max_concurrent_fetches=settings.database_pool_size)


def session_activity(settings: Settings, store: KeyStore) -> LastUsedRecorder:
    """Sessions' ``last_seen_at``, batched (the epoch clock: idle time is judged from it)."""
    return LastUsedRecorder(store.touch_sessions, settings.last_used_interval, clock=time.time)


def session_lookup(checker: Checker) -> RecordLookup[SessionRecord]:
    assert checker.sessions is not None  # build_checker always builds it
    return checker.sessions.lookup


def build_recorder(settings: Settings) -> EventRecorder:
    """Authentication events of this process (``HOKUSAI_EVENTS_*``)."""
    return EventRecorder(
        settings.database_url,
        settings.events_queue_size,
        settings.events_flush_interval,
        settings.events_retention,
        instance=settings.events_instance,
    )


async def reload_policy(settings: Settings, checker: Checker) -> None:
    """Load the central key policy into ``checker`` (kept as it was when Postgres is away)."""
    try:
        checker.key_policy = await policy_sql.load(
            settings.database_url, settings.database_timeout * 4
        )
    except StoreUnavailable:
        log.warning("key policy not reloaded: database unavailable")


def build_listener(settings: Settings, checker: Checker) -> InvalidationListener | None:
    """``LISTEN`` for key, policy and session changes: drop the checker's cached copy of a
    changed key or session, reload the policy on ``:policy`` (None without a database)."""
    if not settings.database_url:
        return None
    sessions = session_lookup(checker)

    async def invalidate(key_id: str) -> None:
        if key_id == policy_sql.NOTIFY_PAYLOAD:
            await reload_policy(settings, checker)
            return
        checker.verifier.forget(key_id)
        await checker.lookup.invalidate(key_id)

    async def reset() -> None:  # (re)connected: anything may have changed, the policy too
        await checker.lookup.invalidate_all()
        await sessions.invalidate_all()
        await reload_policy(settings, checker)

    channels = {CHANNEL: invalidate, SESSIONS_CHANNEL: sessions.invalidate}
    return InvalidationListener(settings.database_url, channels, reset)


def default_limit(settings: Settings) -> Limit:
    """The limit of a key that has none of its own."""
    return Limit(settings.rate_limit_default, settings.rate_limit_default_burst)


# --- one authz instance -------------------------------------------------------------------------


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
        self.redis = redis_client(settings)  # one pool: the record cache and the limiter
        # Per-key rate limits: Envoy's RateLimitService, or phase 8 of the Check itself.
        self.limiter = build_limiter(
            self.redis,
            settings.rate_limit_mode,
            settings.rate_limit_sync_interval,
            settings.rate_limit_redis_down,
        )
        in_check = settings.rate_limit_enforcement == "check"
        self.last_used = LastUsedRecorder(self.store.touch, settings.last_used_interval)
        self.last_seen = session_activity(settings, self.store)  # sessions' last_seen_at
        self.events = build_recorder(settings)
        self.checker = build_checker(
            settings,
            self.store,
            self.redis,
            on_allowed=self.last_used.seen,
            limits=KeyLimits(self.limiter, default_limit(settings)) if in_check else None,
            last_seen=self.last_seen,
            on_denied=self.events.denied if settings.events_queue_size else None,
        )
        self.notifier = (
            ExpiryNotifier(
                settings.database_url,
                settings.expiry_webhook_url,
                settings.expiry_webhook_secret,
                settings.expiry_warning_thresholds,
            )
            if settings.expiry_webhook_url and settings.database_url
            else None
        )
        self.lookup, self.verifier = self.checker.lookup, self.checker.verifier
        self.check_service = CheckService(
            self.checker, settings.trusted_hops, settings.docs_base_url
        )
        self.rate_limits = RateLimitService(
            self.limiter, self.lookup, default_limit(settings), settings.docs_base_url
        )
        # Usage rollups from Envoy's AccessLogService.
        self.usage = UsageAggregator(settings.database_url)
        self.access_log = AccessLogService(self.usage)
        self.grpc = GrpcServer(
            self.check_service.handler(), self.rate_limits.handler(), self.access_log.handler()
        )
        self.http = HttpCheckServer(
            self.checker,
            settings.trusted_hops,
            settings.docs_base_url,
            serving=lambda: self.serving,
        )
        self.listener = build_listener(settings, self.checker)
        self.serving = False
        self._tasks: list[asyncio.Task[None]] = []
        self.telemetry: metrics.Runtime | None = None  # exporters, when the settings ask
        self._unobserve: Callable[[], None] | None = None

    async def start(self, listen_timeout: float = 10.0) -> Ports:
        loop = asyncio.get_running_loop()
        self._unobserve = metrics.observe_bcrypt(lambda: self.verifier.bcrypt_runs)
        if self.listener is not None:
            self._tasks.append(loop.create_task(self.listener.run()))
            try:
                await asyncio.wait_for(self.listener.connected.wait(), listen_timeout)
            except TimeoutError:
                log.warning("starting without cache invalidation: database not reachable")
        if self.settings.database_url:
            await reload_policy(self.settings, self.checker)  # before serving: rules hold at once
        self._tasks.append(loop.create_task(self.last_used.run()))
        self._tasks.append(loop.create_task(self.last_seen.run()))
        self._tasks.append(loop.create_task(self.events.run()))
        if self.notifier is not None:
            self._tasks.append(loop.create_task(self._notify_forever()))
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

    async def _notify_forever(self, interval: float = WEBHOOK_INTERVAL) -> None:
        """Expiry warnings (``authz/events/webhook.py``), one pass per interval, in a thread."""
        assert self.notifier is not None
        while True:
            try:
                await asyncio.to_thread(self.notifier.run_once)
            except Exception as exc:  # the database may be away: the next pass retries
                log.warning("expiry warnings failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(interval)

    async def stop(self, grace: float = 5.0) -> None:
        self.serving = False
        await self.grpc.set_serving(False)
        await self.http.stop()
        await self.grpc.stop(grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.last_used.flush()
        await self.last_seen.flush()
        await self.usage.flush()  # the access-log streams have ended: nothing more arrives
        await self.events.flush()  # the transports have stopped: no more denials arrive
        await self.limiter.close()
        if self.telemetry is not None:
            await self.telemetry.stop()
        if self._unobserve is not None:
            self._unobserve()
        self.verifier.close()
        if self.redis is not None:
            await self.redis.aclose()
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
    logs.configure_logging(settings)
    try:
        asyncio.run(serve(settings))
    except SettingsError as exc:
        print(f"hokusai authz: {exc}", file=sys.stderr)
        return 2
    return 0
