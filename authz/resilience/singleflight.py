"""The one single flight: concurrent calls for the same key share one run of the work.

The first caller runs ``work()``; callers that arrive while it runs await the same result (or
exception) instead of starting their own. Used for cold record lookups (one store query per key
id, however many checks wait for it), bcrypt (one verification per presented secret) and the
lease limiter's Redis calls (one grant or return per key at a time, ``authz/ratelimit/leases.py``).
A waiter that is cancelled does not cancel the shared work (``asyncio.shield``).

``start`` is ``run`` for synchronous callers (the limiter's no-I/O path starts refills): the work
runs in a task and counts as running from the moment ``start`` returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._inflight: dict[K, asyncio.Future[V]] = {}
        self._tasks: set[asyncio.Task[V]] = set()

    def running(self, key: K) -> bool:
        """Whether work for ``key`` is under way."""
        return key in self._inflight

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        return await self._complete(key, self._register(key), work)

    def start(
        self, key: K, work: Callable[[], Awaitable[V]], then: Callable[[], object] | None = None
    ) -> asyncio.Future[V]:
        """Start ``work`` in a task unless work for ``key`` is under way; the shared future
        either way (a failure is set on it, not raised elsewhere). ``then`` runs as soon as the
        work is over and no longer running, in the same step (so it may start the next)."""
        pending = self._inflight.get(key)
        if pending is not None:
            return pending
        future = self._register(key)
        task = asyncio.get_running_loop().create_task(self._complete(key, future, work, then))
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        return future

    async def wait(self) -> None:
        """Until the work under way now has finished (what it starts meanwhile may still run)."""
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    def _register(self, key: K) -> asyncio.Future[V]:
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        return future

    async def _complete(
        self,
        key: K,
        future: asyncio.Future[V],
        work: Callable[[], Awaitable[V]],
        then: Callable[[], object] | None = None,
    ) -> V:
        try:
            result = await work()
        except GeneratorExit:  # a task dropped unfinished with its closed loop: nothing follows
            del self._inflight[key]
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            self._over(key, then)
            raise
        future.set_result(result)
        self._over(key, then)
        return result

    def _over(self, key: K, then: Callable[[], object] | None) -> None:
        del self._inflight[key]
        if then is not None:
            then()

    def _forget(self, task: asyncio.Task[V]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # on the shared future already: not "never retrieved"
