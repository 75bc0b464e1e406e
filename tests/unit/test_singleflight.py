"""The one single flight: ``run`` shares one execution among concurrent callers; ``start`` is the
same for synchronous callers (running at once, ``then`` when over, failures on the future)."""

from __future__ import annotations

import asyncio

import pytest

from authz.resilience.singleflight import SingleFlight


def test_concurrent_runs_share_one_execution() -> None:
    async def body() -> tuple[list[int], int]:
        flight: SingleFlight[str, int] = SingleFlight()
        calls = 0

        async def work() -> int:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0)
            return 7

        results = await asyncio.gather(*(flight.run("k", work) for _ in range(5)))
        return results, calls

    assert asyncio.run(body()) == ([7] * 5, 1)


def test_start_runs_at_once_and_then_follows_when_it_is_over() -> None:
    async def body() -> list[object]:
        flight: SingleFlight[str, int] = SingleFlight()
        seen: list[object] = []
        release = asyncio.Event()

        async def work() -> int:
            await release.wait()
            return 3

        future = flight.start("k", work, then=lambda: seen.append(flight.running("k")))
        seen.append(flight.running("k"))  # registered before the task has run
        assert flight.start("k", work) is future  # joins the work under way
        joined = asyncio.ensure_future(flight.run("k", work))
        release.set()
        seen += [await future, await joined]
        return seen

    assert asyncio.run(body()) == [True, False, 3, 3]


def test_a_failure_of_started_work_is_on_the_future() -> None:
    async def body() -> None:
        flight: SingleFlight[str, int] = SingleFlight()

        async def work() -> int:
            raise ConnectionError("down")

        future = flight.start("k", work)
        await flight.wait()
        assert not flight.running("k")
        with pytest.raises(ConnectionError):
            future.result()

    asyncio.run(body())
