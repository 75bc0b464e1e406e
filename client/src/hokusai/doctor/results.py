"""One line of the doctor's report: a check, its status, what was seen and what to do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "FAIL", "skip"]


@dataclass(frozen=True, slots=True)
class Result:
    check: str
    status: Status
    detail: str
    advice: str = ""


def ok(check: str, detail: str) -> Result:
    return Result(check, "ok", detail)


def fail(check: str, detail: str, advice: str) -> Result:
    return Result(check, "FAIL", detail, advice)


def skip(check: str, detail: str) -> Result:
    return Result(check, "skip", detail)


def skips(checks: tuple[str, ...] | list[str], detail: str) -> list[Result]:
    return [skip(check, detail) for check in checks]


def passed(results: list[Result]) -> bool:
    return all(r.status == "ok" for r in results)
