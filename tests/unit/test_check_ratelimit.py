"""Phase 8 of the Check (HOKUSAI_RATE_LIMIT_ENFORCEMENT=check) with fakes and an injected clock,
and the per-request x-ratelimit-* headers appended to both transports' cached responses."""

from __future__ import annotations

import asyncio

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from authz.check.checker import Checker, CheckInput, CheckPolicy, Decision
from authz.check.credentials import CredentialSources
from authz.check.reasons import Reason
from authz.check.verify import SecretVerifier
from authz.keys import format as keys
from authz.keys.record import KeyRecord
from authz.ratelimit.gcra import Limit, LimiterStats, Verdict
from authz.ratelimit.limiters import ApproximateLimiter, KeyLimits
from authz.storage.cache import LocalCache
from authz.storage.lookup import RecordLookup
from authz.storage.store import MemoryKeyStore
from authz.transports.envoy import ResponseCache
from authz.transports.http import HttpResponses
from tests.unit.test_check import Clock, make_record

DEFAULT = Limit(3600, 10)


class ExactFake:
    """An exact-mode limiter: never decides without I/O, counts the awaited decisions."""

    def __init__(self, inner: ApproximateLimiter, down: bool = False) -> None:
        self.inner, self.down, self.awaited = inner, down, 0
        self.stats = LimiterStats()

    def decide_now(self, key_id: str, limit: Limit, cost: int = 1) -> Verdict | None:
        return None

    async def decide(self, key_id: str, limit: Limit, cost: int = 1) -> Verdict:
        self.awaited += 1
        if self.down:  # redis_down = deny
            return Verdict(False, limit, 0, 0.0, 1.0, degraded=True)
        return self.inner.decide_now(key_id, limit, cost)

    async def run(self) -> None:
        return None

    async def close(self) -> None:
        return None


def build(
    record: KeyRecord, limiter: ApproximateLimiter | ExactFake, allowed: list[str]
) -> Checker:
    lookup = RecordLookup(
        LocalCache(ttl=60, negative_ttl=1, stale_window=300, size=10),
        None,
        MemoryKeyStore([record]),
    )
    return Checker(
        CheckPolicy(frozenset({"live"}), True),
        lookup,
        SecretVerifier(b"p", 1),
        on_allowed=lambda r: allowed.append(r.key_id),
        limits=KeyLimits(limiter, DEFAULT),
    )  # type: ignore[arg-type]


def bearer(token: str) -> CredentialSources:
    return CredentialSources(authorization=f"Bearer {token}", api_key_header=None, query="")


def request(token: str) -> CheckInput:
    return CheckInput(
        "GET", "/api/mlflow/api/2.0/mlflow/experiments/get", bearer(token), "10.0.0.1"
    )


@pytest.fixture
def key() -> keys.NewKey:
    return keys.generate("live")


def test_exactly_burst_then_rate_limited_without_io(key: keys.NewKey) -> None:
    clock, allowed = Clock(), list[str]()
    checker = build(
        make_record(key, rate_limit_per_hour=60, burst=3),
        ApproximateLimiter(None, 0.1, clock=clock),
        allowed,
    )

    async def run() -> list[Decision]:
        first = await checker.check(request(key.token))  # cold: Postgres + bcrypt
        rest = [checker.check_now(request(key.token)) for _ in range(4)]
        assert all(d is not None for d in rest)  # warm and approximate: answered synchronously
        return [first, *(d for d in rest if d is not None)]

    decisions = asyncio.run(run())
    assert [d.reason for d in decisions] == [Reason.ALLOWED] * 3 + [Reason.RATE_LIMITED] * 2
    assert [d.limit.remaining for d in decisions[:3] if d.limit] == [2, 1, 0]
    denied = decisions[3]
    # the record rides along (authentication events name its user); the answer is the reason's
    assert denied.limit is not None and not denied.allowed and denied.key_id == key.parsed.key_id
    assert denied.limit.retry_after == pytest.approx(60.0)  # one request per minute refills
    assert allowed == [key.parsed.key_id] * 3  # a 429 is not a use (last-used, hooks)
    clock.now += 60.0
    again = checker.check_now(request(key.token))
    assert again is not None and again.allowed and again.limit is not None


def test_default_limit_applies_and_unlimited_keys_carry_no_headers(key: keys.NewKey) -> None:
    clock = Clock()
    checker = build(make_record(key), ApproximateLimiter(None, 0.1, clock=clock), [])
    decision = asyncio.run(checker.check(request(key.token)))
    assert decision.limit is not None and decision.limit.limit == DEFAULT
    unlimited = keys.generate("live")
    checker = build(
        make_record(unlimited, rate_limit_per_hour=0),
        ApproximateLimiter(None, 0.1, clock=clock),
        [],
    )
    decisions = [asyncio.run(checker.check(request(unlimited.token))) for _ in range(20)]
    assert all(d.allowed and d.limit is None for d in decisions)


def test_exact_mode_awaits_the_limiter(key: keys.NewKey) -> None:
    fake = ExactFake(ApproximateLimiter(None, 0.1, clock=Clock()))
    checker = build(make_record(key, rate_limit_per_hour=60, burst=2), fake, [])

    async def run() -> list[Reason]:
        reasons = [(await checker.check(request(key.token))).reason]
        assert checker.check_now(request(key.token)) is None  # warm, but the limit needs I/O
        reasons += [(await checker.check(request(key.token))).reason for _ in range(2)]
        return reasons

    assert asyncio.run(run()) == [Reason.ALLOWED, Reason.ALLOWED, Reason.RATE_LIMITED]
    assert fake.awaited == 3


def test_limiter_down_with_deny_policy_is_unavailable(key: keys.NewKey) -> None:
    fake = ExactFake(ApproximateLimiter(None, 0.1, clock=Clock()), down=True)
    checker = build(make_record(key, rate_limit_per_hour=60, burst=2), fake, [])
    decision = asyncio.run(checker.check(request(key.token)))
    assert decision.reason is Reason.UNAVAILABLE and decision.limit is None


def test_authentication_and_scope_come_before_the_limit(key: keys.NewKey) -> None:
    limiter = ApproximateLimiter(None, 0.1, clock=Clock())
    checker = build(
        make_record(key, rate_limit_per_hour=60, burst=1, scopes=frozenset({"mlflow:read"})),
        limiter,
        [],
    )
    wrong = keys.generate("live", key.parsed.key_id).token
    write = CheckInput(
        "POST", "/api/mlflow/api/2.0/mlflow/runs/create", bearer(key.token), "10.0.0.1"
    )

    async def run() -> list[Reason]:
        return [
            (await checker.check(request(wrong))).reason,
            (await checker.check(write)).reason,
            (await checker.check(request(key.token))).reason,
        ]

    # Denied requests spend nothing: the one-request burst is still there for the good one.
    assert asyncio.run(run()) == [Reason.INVALID_SECRET, Reason.INSUFFICIENT_SCOPE, Reason.ALLOWED]


# --- the headers on both transports ------------------------------------------------------------

ALLOWED = Verdict(True, Limit(60, 5), 4, 60.0)
DENIED = Verdict(False, Limit(60, 5), 0, 300.0, 59.2)


def _decisions(key: keys.NewKey) -> tuple[Decision, Decision]:
    record = make_record(key)
    return (
        Decision(Reason.ALLOWED, record=record, key_id=record.key_id, limit=ALLOWED),
        Decision(Reason.RATE_LIMITED, key_id=record.key_id, limit=DENIED),
    )


def test_grpc_headers_merge_into_the_cached_response(key: keys.NewKey) -> None:
    cache = ResponseCache("/docs")
    allow, deny = _decisions(key)
    plain = CheckResponse.FromString(
        cache.encode(Decision(Reason.ALLOWED, allow.record, allow.key_id))
    )
    ok = CheckResponse.FromString(cache.encode(allow))
    added = {h.header.key: h.header.value for h in ok.ok_response.response_headers_to_add}
    assert added == {
        "x-ratelimit-limit": "60",
        "x-ratelimit-remaining": "4",
        "x-ratelimit-reset": "60",
    }
    assert ok.ok_response.headers == plain.ok_response.headers  # the cached part is intact
    assert ok.dynamic_metadata == plain.dynamic_metadata
    denied = CheckResponse.FromString(cache.encode(deny))
    assert denied.denied_response.status.code == 429
    headers = {h.header.key: h.header.value for h in denied.denied_response.headers}
    assert headers["retry-after"] == "60" and headers["x-ratelimit-remaining"] == "0"
    assert headers["x-ratelimit-reset"] == "300" and headers["content-type"] == "application/json"
    assert b"rate_limited" in denied.denied_response.body.encode()


def test_http_headers_are_spliced_into_the_cached_head(key: keys.NewKey) -> None:
    responses = HttpResponses("/docs")
    allow, deny = _decisions(key)
    head, _, body = responses.encode(allow).partition(b"\r\n\r\n")
    assert body == b"" and b"\r\nx-ratelimit-remaining: 4" in head
    assert b"\r\nx-hokusai-key-id: " + key.parsed.key_id.encode() in head
    head, _, body = responses.encode(deny).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429 ") and b"\r\nretry-after: 60" in head
    assert b"\r\nx-ratelimit-limit: 60" in head and b'"rate_limited"' in body
    assert f"content-length: {len(body)}".encode() in head
