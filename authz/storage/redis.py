"""The one Redis client of a process: the record cache and the rate limiter share its pool.

Every call has the short ``HOKUSAI_REDIS_TIMEOUT`` and no retry on time-out, so a slow or lost
Redis costs one time-out before the caller's breaker opens; each caller decides what a failure
means (a cache miss, or the limiter's ``redis_down`` policy). Whoever builds the client closes it
(``authz.server``, the keys API's runtime), after the parts that use it have stopped.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from authz.settings import Settings


def redis_client(settings: Settings) -> aioredis.Redis | None:
    """The client for ``HOKUSAI_REDIS_URL``; None when no Redis is configured."""
    if not settings.redis_url:
        return None
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        retry_on_timeout=False,
        health_check_interval=0,
    )
