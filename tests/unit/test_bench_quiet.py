"""The harness starts each cell on a quiet machine: the decision, on made-up /proc/stat readings."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from bench.harness import busy_fraction, cpu_busy_ticks, wait_quiet


def readings(busy_shares: list[float]) -> Callable[[], tuple[int, int]]:
    """(busy, total) readings whose successive differences are the given busy shares of 100."""

    def steps() -> Iterator[tuple[int, int]]:
        busy = total = 0
        yield busy, total
        for share in busy_shares:
            busy, total = busy + int(share * 100), total + 100
            yield busy, total

    return steps().__next__


def test_busy_fraction() -> None:
    assert busy_fraction((10, 100), (60, 200)) == 0.5
    assert busy_fraction((10, 100), (10, 100)) == 0.0  # no time passed: not busy


def test_waits_for_two_quiet_looks_in_a_row() -> None:
    slept: list[float] = []
    looks = wait_quiet(readings([0.9, 0.1, 0.8, 0.05, 0.1, 0.9]), slept.append)
    assert looks == 5 and len(slept) == 5


def test_gives_up_after_the_bound() -> None:
    assert wait_quiet(readings([1.0] * 10), lambda _: None, max_looks=4) == 4


def test_reads_this_machine() -> None:
    busy, total = cpu_busy_ticks()
    assert 0 <= busy <= total and total > 0
