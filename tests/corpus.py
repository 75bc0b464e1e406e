"""The bad-input corpus of shared/TESTPLAN.md, as data: one list that every transport is run
against (unit tests on the pipeline, the gRPC and HTTP transports, Envoy end to end)."""

from __future__ import annotations

from dataclasses import dataclass, field

from authz.keys import format as keys


@dataclass(frozen=True)
class Case:
    name: str
    expected: str  # a Reason value
    headers: tuple[tuple[str, str], ...] = ()
    query: str = ""
    method: str = "GET"
    path: str = "/api/mlflow/api/2.0/mlflow/experiments/get"
    notes: dict[str, str] = field(default_factory=dict)


def _tamper(token: str, index: int) -> str:
    ch = token[index]
    return token[:index] + ("A" if ch != "A" else "B") + token[index + 1 :]


def corpus(valid: str, revoked: str, unknown_id_key: str, test_env_key: str) -> list[Case]:
    """Cases for a gateway accepting only ``live`` keys.

    ``valid`` is an active live key with scope mlflow:read only; ``revoked`` a revoked live key;
    ``unknown_id_key`` a well-formed live key whose id is not in the store; ``test_env_key`` a
    well-formed test key.
    """
    parsed = keys.parse(valid)
    assert parsed is not None
    wrong_secret = keys.generate("live", parsed.key_id).token
    bearer = f"Bearer {valid}"
    return [
        Case("valid", "allowed", (("authorization", bearer),)),
        Case("valid lower-case scheme", "allowed", (("authorization", f"bearer {valid}"),)),
        Case("valid upper-case scheme", "allowed", (("authorization", f"BEARER {valid}"),)),
        Case("valid x-api-key", "allowed", (("x-api-key", valid),)),
        Case("valid query", "allowed", query=f"api_key={valid}"),
        Case(
            "read-only POST search",
            "allowed",
            (("authorization", bearer),),
            method="POST",
            path="/api/mlflow/api/2.0/mlflow/runs/search",
        ),
        Case("no credential", "missing_key"),
        Case("empty header", "missing_key", (("authorization", ""),)),
        Case("bearer with nothing", "missing_key", (("authorization", "Bearer"),)),
        Case("bearer and a space", "missing_key", (("authorization", "Bearer "),)),
        Case("basic scheme", "malformed_key", (("authorization", f"Basic {valid}"),)),
        Case("bearer colon", "malformed_key", (("authorization", f"Bearer:{valid}"),)),
        Case("bearer tab", "malformed_key", (("authorization", f"Bearer\t{valid}"),)),
        Case("two spaces", "malformed_key", (("authorization", f"Bearer  {valid}"),)),
        Case(
            "header and x-api-key",
            "multiple_credentials",
            (("authorization", bearer), ("x-api-key", valid)),
        ),
        Case(
            "header and query",
            "multiple_credentials",
            (("authorization", bearer),),
            query=f"api_key={valid}",
        ),
        Case("two query params", "multiple_credentials", query=f"api_key={valid}&api_key={valid}"),
        Case(
            "two authorization headers",
            "multiple_credentials",
            (("authorization", bearer), ("authorization", bearer)),
        ),
        Case("oversized key", "malformed_key", (("authorization", "Bearer " + "a" * 5000),)),
        Case("truncated", "malformed_key", (("authorization", bearer[:-1]),)),
        Case("extended", "malformed_key", (("authorization", bearer + "x"),)),
        Case(
            "one character changed",
            "malformed_key",
            (("authorization", "Bearer " + _tamper(valid, 30)),),
        ),
        Case("random garbage", "malformed_key", (("authorization", "Bearer not-a-key"),)),
        Case(
            "wrong secret, right checksum",
            "invalid_secret",
            (("authorization", f"Bearer {wrong_secret}"),),
        ),
        Case("unknown key id", "unknown_key", (("authorization", f"Bearer {unknown_id_key}"),)),
        Case(
            "test key at live gateway",
            "wrong_environment",
            (("authorization", f"Bearer {test_env_key}"),),
        ),
        Case("revoked", "revoked", (("authorization", f"Bearer {revoked}"),)),
        Case(
            "write with read key",
            "insufficient_scope",
            (("authorization", bearer),),
            method="POST",
            path="/api/mlflow/api/2.0/mlflow/experiments/create",
        ),
    ]
