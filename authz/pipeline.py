"""The key-validation pipeline, built once from the settings for every process that checks keys.

The authz server (``authz.server``) and the keys REST API (``authz.api``) both authenticate callers
with a ``Checker`` made here, so the caches, the verifier and the invalidation wiring are written
once. Each process builds its own instance: caches and fingerprints live in-process, Redis and
Postgres are shared.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import redis.asyncio as aioredis

from authz.check.checker import Checker, CheckPolicy
from authz.check.verify import SecretVerifier
from authz.keys.record import KeyRecord
from authz.settings import Settings, SettingsError
from authz.storage.cache import LocalCache, RedisCache
from authz.storage.invalidation import InvalidationListener
from authz.storage.lookup import RecordLookup
from authz.storage.store import KeyStore, PostgresKeyStore


def build_store(settings: Settings) -> KeyStore:
    if not settings.database_url:
        raise SettingsError("HOKUSAI_DATABASE_URL: required to validate keys")
    return PostgresKeyStore(
        settings.database_url, settings.database_pool_size, settings.database_timeout
    )


def build_redis(client: aioredis.Redis | None, settings: Settings) -> RedisCache | None:
    """The shared record cache on the process's Redis client, or None without Redis."""
    if client is None:
        return None
    return RedisCache(client, settings.redis_cache_ttl)


def build_checker(
    settings: Settings,
    store: KeyStore,
    redis: RedisCache | None,
    on_allowed: Callable[[KeyRecord], None] = lambda _r: None,
) -> Checker:
    """The check pipeline: local cache → Redis → store, bcrypt verifier, check policy."""
    local = LocalCache(
        settings.local_cache_ttl,
        settings.negative_cache_ttl,
        settings.stale_window,
        settings.local_cache_size,
    )
    lookup = RecordLookup(local, redis, store, max_concurrent_fetches=settings.database_pool_size)
    # Without a configured pepper, fingerprints are only meaningful inside this process.
    pepper = settings.pepper.encode() if settings.pepper else os.urandom(32)
    verifier = SecretVerifier(pepper, settings.bcrypt_threads)
    return Checker(
        CheckPolicy(settings.accepted_envs, settings.query_param_enabled),
        lookup,
        verifier,
        on_allowed=on_allowed,
    )


def build_listener(settings: Settings, checker: Checker) -> InvalidationListener | None:
    """``LISTEN`` for key changes and drop the checker's cached copy (None without a database)."""
    if not settings.database_url:
        return None

    async def invalidate(key_id: str) -> None:
        checker.verifier.forget(key_id)
        await checker.lookup.invalidate(key_id)

    return InvalidationListener(settings.database_url, invalidate, checker.lookup.invalidate_all)
