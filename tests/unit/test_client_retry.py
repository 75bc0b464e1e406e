"""The client's own retries (hokusai.retry, hokusai.gateway) over a fake transport and a fake
clock: what is retried, how long it waits, and that attempts and time are both bounded."""

from __future__ import annotations

import email.utils

import pytest

from hokusai import errors, keyformat
from hokusai.gateway import Gateway, Reply, Unreachable, Untrusted
from hokusai.retry import RetryPolicy, retry_after
from hokusai.settings import Settings
from tests.support.client import FakeTransport, Waits, fake_policy, json_reply

KEY = keyformat.generate("live").token
SETTINGS = Settings(url="https://gw", key=KEY)
BUSY = json_reply(503, '{"error": "unavailable"}', {"retry-after": "1"})
LIMITED = json_reply(429, '{"error": "rate_limited"}', {"retry-after": "2"})


def gateway(answers: list[object], waits: Waits, **policy: object) -> tuple[Gateway, FakeTransport]:
    transport = FakeTransport({"/x": answers})  # type: ignore[dict-item]
    return Gateway(SETTINGS, transport, fake_policy(waits, **policy)), transport


def test_ok_at_once() -> None:
    waits = Waits()
    gw, transport = gateway([Reply(200)], waits)
    assert gw.get("/x").status == 200
    assert waits.slept == [] and len(transport.calls) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500, 502])
def test_never_retried(status: int) -> None:
    waits = Waits()
    gw, transport = gateway([Reply(status), Reply(200)], waits)
    assert gw.get("/x").status == status
    assert len(transport.calls) == 1 and waits.slept == []


def test_retry_after_is_honoured_exactly() -> None:
    waits = Waits()
    gw, _ = gateway([BUSY, LIMITED, Reply(200)], waits)
    assert gw.get("/x").status == 200
    assert waits.slept == [1.0, 2.0]


def test_connection_errors_back_off_with_full_jitter() -> None:
    waits = Waits()
    gw, transport = gateway([Unreachable("connection refused")], waits)
    with pytest.raises(errors.GatewayUnavailableError) as caught:
        gw.get("/x")
    assert caught.value.reason == "unreachable" and "connection refused" in caught.value.message
    assert len(transport.calls) == 4
    assert waits.slept == [0.25, 0.5, 1.0]  # draw 0.5 × min(4, 0.5·2^(n−1))


def test_backoff_ceiling_and_cap() -> None:
    policy = RetryPolicy(draw=lambda: 0.999999)
    ceilings = [policy.backoff(n) for n in range(1, 8)]
    assert ceilings == pytest.approx([0.5, 1, 2, 4, 4, 4, 4], rel=1e-5)
    zero = RetryPolicy(draw=lambda: 0.0)
    assert zero.backoff(5) == 0.0


def test_attempts_are_bounded_and_the_last_answer_returned() -> None:
    waits = Waits()
    gw, transport = gateway([BUSY], waits)
    assert gw.get("/x").status == 503
    assert len(transport.calls) == 4 and waits.slept == [1.0, 1.0, 1.0]


def test_a_retry_after_beyond_the_budget_is_not_waited_for() -> None:
    waits = Waits()
    long = json_reply(429, '{"error": "rate_limited"}', {"retry-after": "3600"})
    gw, transport = gateway([long, Reply(200)], waits)
    reply = gw.get("/x")
    assert reply.status == 429 and reply.retry_after == 3600
    assert len(transport.calls) == 1 and waits.slept == []


def test_time_is_bounded_as_well_as_attempts() -> None:
    waits = Waits()
    gw, transport = gateway([BUSY], waits, attempts=100, budget=5.0)
    assert gw.get("/x").status == 503
    assert sum(waits.slept) <= 5.0 and len(transport.calls) == 6


def test_attempt_timeouts_shrink_to_the_budget() -> None:
    policy = RetryPolicy(connect_timeout=5, read_timeout=10)
    assert policy.timeout(20) == (5, 10)
    assert policy.timeout(3) == (3, 3)
    assert policy.timeout(-1) == (0.1, 0.1)


def test_tls_failures_are_not_retried() -> None:
    waits = Waits()
    gw, transport = gateway([Untrusted("certificate verify failed"), Reply(200)], waits)
    with pytest.raises(errors.GatewayUnavailableError) as caught:
        gw.get("/x")
    assert caught.value.reason == "tls" and len(transport.calls) == 1


def test_the_key_goes_only_where_asked_and_the_ca_with_every_request() -> None:
    waits = Waits()
    transport = FakeTransport({"/x": [Reply(200)]})
    gw = Gateway(
        Settings(url="https://gw", key=KEY, ca_cert="/ca.pem"), transport, fake_policy(waits)
    )
    gw.get("/x")
    gw.get("/x", authenticated=True)
    (_, plain, verify), (_, keyed, _) = transport.calls
    assert "authorization" not in plain and keyed["authorization"] == f"Bearer {KEY}"
    assert verify == "/ca.pem"


def test_retry_after_parsing() -> None:
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after(" 7 ") == 7.0
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after(date, now=1_000_000) == pytest.approx(30)
    assert retry_after(email.utils.formatdate(0, usegmt=True), now=1_000_000) == 0.0
