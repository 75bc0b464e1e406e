"""Redis clients for the limiter tests, built as authz builds the process's one client, and the
scenario runner that closes them afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis

from authz.settings import Settings
from authz.storage.redis import redis_client

T = TypeVar("T")
CLIENTS: list[aioredis.Redis] = []


def client(url: str, timeout: float = 0.2) -> aioredis.Redis:
    """The process's Redis client as authz builds it; ``run`` closes it after the scenario."""
    made = redis_client(Settings(redis_url=url, redis_timeout=timeout))
    assert made is not None
    CLIENTS.append(made)
    return made


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run`` the scenario, then close every client it made."""

    async def scenario() -> T:
        try:
            return await factory()
        finally:
            while CLIENTS:
                await CLIENTS.pop().aclose()

    return asyncio.run(scenario())
