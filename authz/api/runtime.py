"""What the keys API keeps for its lifetime: the check pipeline, a Postgres connection pool, the
gateway's pages (sign-in, sessions, docs; ``authz.pages``) with the limiter that slows a loop of
wrong sign-ins, and the authentication events of this process (denials, sign-ins, sign-outs).

Built in the application's lifespan (never at import time), on the server's event loop: the
pipeline's async clients belong to that loop. Start mirrors ``authz.server``: the invalidation
listener first (a revocation must reach this process's cache too), then the pools, the central
key policy, the events' flushes and the periodic pruning of ended sessions (one instance at a
time: an advisory lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from psycopg_pool import ConnectionPool

from authz.check.checker import Checker
from authz.events.recorder import EventRecorder
from authz.management.service import KeyService
from authz.management.sessions import SessionService
from authz.pages.routes import Pages
from authz.pages.signin import SignIn, outside_signin
from authz.ratelimit.limiters import RateLimiter, build_limiter
from authz.server import (
    build_checker,
    build_listener,
    build_recorder,
    build_store,
    reload_policy,
)
from authz.settings import Settings, SettingsError
from authz.storage.db import ConnectionFactory, pooled_connector
from authz.storage.invalidation import InvalidationListener
from authz.storage.redis import redis_client
from authz.storage.store import KeyStore

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    checker: Checker
    connect: ConnectionFactory
    store: KeyStore
    redis: aioredis.Redis | None
    pool: ConnectionPool[Any] | None
    listener: InvalidationListener | None
    limiter: RateLimiter
    pages: Pages
    # Denials of callers' keys and of browser sessions' keys, and the pages' sign-ins, refused
    # sign-ins and sign-outs (``events.signin``, from ``authz.pages.signin``).
    events: EventRecorder
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        settings: Settings,
        connect: ConnectionFactory | None = None,
        store: KeyStore | None = None,
    ) -> Runtime:
        if not settings.database_url:
            raise SettingsError("HOKUSAI_DATABASE_URL: required to run the keys API")
        store = store or build_store(settings)
        redis = redis_client(settings)
        events = build_recorder(settings)
        recording = settings.events_queue_size > 0
        # A refused sign-in is one event, ``signin_refused``, recorded by the sign-in itself.
        on_denied = outside_signin(events.denied) if recording else None
        checker = build_checker(settings, store, redis, on_denied=on_denied)
        pool = None
        if connect is None:
            pool, connect = pooled_connector(settings)
        limiter = build_limiter(redis, "exact", 1.0, "open")  # sign-ins: exact, shared
        sessions = SessionService(connect, settings)
        users = KeyService(connect, settings, "web:pages")
        pages = Pages(
            settings,
            checker,
            SignIn(checker, sessions, limiter, settings, events if recording else None),
            sessions,
            users.user_email,
        )
        listener = build_listener(settings, checker)
        return cls(settings, checker, connect, store, redis, pool, listener, limiter, pages, events)

    async def start(self, listen_timeout: float = 10.0) -> None:
        if self.listener is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(self.listener.run()))
            try:
                await asyncio.wait_for(self.listener.connected.wait(), listen_timeout)
            except TimeoutError:
                log.warning("keys API starting without cache invalidation")
        if self.pool is not None:
            self.pool.open(wait=False)
        await reload_policy(self.settings, self.checker)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.events.run()))
        self._tasks.append(loop.create_task(self._prune_sessions()))

    async def _prune_sessions(self) -> None:
        """Delete ended sessions every ``HOKUSAI_SESSION_PRUNE_INTERVAL`` (one instance does)."""
        while True:
            await asyncio.sleep(self.settings.session_prune_interval)
            try:
                await asyncio.to_thread(self.pages.sessions.prune_exclusively)
            except Exception as exc:  # the next round tries again
                log.warning("pruning sessions failed", extra={"error": type(exc).__name__})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.events.flush()
        if self.pool is not None:
            await asyncio.to_thread(self.pool.close)
        self.checker.verifier.close()
        await self.limiter.close()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()
        await self.store.close()
