"""The warm check path's shortcuts give the same answers as the long way (issue 7's speed-ups)."""

from __future__ import annotations

import asyncio
import ipaddress
import os

import pytest

from authz.check.reasons import Reason
from authz.keys import format as keys
from authz.keys import record as records
from authz.keys.record import KeyRecord
from authz.telemetry import metrics as telemetry
from authz.transports.http import IDLE_SWEEPS, CheckProtocol, HttpCheckServer


def record(
    networks: tuple[str, ...] = (), scopes: object = frozenset({"mlflow:read"})
) -> KeyRecord:
    return KeyRecord(
        key_id=keys.new_key_id(),
        user_id=1,
        env="live",
        secret_hash="x",
        scopes=scopes,  # type: ignore[arg-type]
        expires_at=None,
        revoked_at=None,
        networks=tuple(ipaddress.ip_network(n) for n in networks),
        rate_limit_per_hour=None,
        burst=None,
        version=1,
    )


# --- keys ----------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [0, 1, 32, 63, 64, 65, 200])
def test_fingerprinter_matches_hmac(length: int) -> None:
    pepper = os.urandom(length)
    fingerprint = keys.Fingerprinter(pepper)
    for _ in range(20):
        key = keys.generate("live").parsed
        assert fingerprint(key) == keys.fingerprint(pepper, key)


# --- records -------------------------------------------------------------------------------
def test_allows_client_memo_keeps_allowlists_apart() -> None:
    loopback, docs = record(("127.0.0.0/8",)), record(("192.0.2.0/24",))
    for _ in range(3):  # the second and third rounds are answered by the memo
        assert loopback.allows_client("127.0.0.1") and not docs.allows_client("127.0.0.1")
        assert docs.allows_client("192.0.2.7") and not loopback.allows_client("192.0.2.7")
        assert loopback.allows_client("::ffff:127.0.0.1")
        assert not loopback.allows_client("not an address")
        assert not loopback.allows_client("")
    assert record().allows_client("anything")  # no allowlist: everyone


def test_allows_client_memo_is_bounded_and_stays_right() -> None:
    key = record(("10.0.0.0/8",))
    for i in range(records.ALLOWED_MEMO_SIZE + 10):
        address = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
        assert key.allows_client(address)
    assert len(records._ALLOWED) <= records.ALLOWED_MEMO_SIZE
    assert not key.allows_client("11.0.0.1")


def test_records_share_equal_scopes_and_allowlists() -> None:
    a = record(("127.0.0.0/8",), frozenset({"mlflow:read", "mlflow:write"}))
    b = record(("127.0.0.0/8",), frozenset({"mlflow:write", "mlflow:read"}))
    assert a.scopes is b.scopes and a.networks is b.networks
    odd = record(scopes=["mlflow:read"])  # unhashable input is kept as given
    assert list(odd.scopes) == ["mlflow:read"]


# --- HTTP idle sweep ----------------------------------------------------------------------
class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_idle_connections_close_after_silent_sweeps_only() -> None:
    server = HttpCheckServer(
        None,  # type: ignore[arg-type]
        0,
        "https://docs",
        lambda: True,
    )
    protocol, transport = CheckProtocol(server), Transport()
    protocol.connection_made(transport)
    assert protocol in server.connections
    for _ in range(IDLE_SWEEPS * 3):  # data between sweeps keeps it open
        server.sweep()
        protocol.data_received(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    assert not transport.closed
    for _ in range(IDLE_SWEEPS):
        server.sweep()
    assert transport.closed
    protocol.connection_lost(None)
    assert protocol not in server.connections


# --- telemetry buckets ---------------------------------------------------------------------
def test_latency_is_counted_in_its_bucket_and_exposed_as_a_histogram() -> None:
    saved = telemetry._latency
    telemetry._latency = {t: telemetry.Latency() for t in telemetry.TRANSPORTS}
    try:
        now = telemetry.now()
        telemetry.checked(Reason.ALLOWED, now - 3_000_000, "http")  # 3 ms: the 4.096 ms bucket
        telemetry.checked(Reason.ALLOWED, now - 5 * 10**9, "grpc")  # 5 s: +Inf
        assert telemetry._latency["http"].counts[12] == 1
        assert telemetry._latency["grpc"].counts[-1] == 1
        family = next(iter(telemetry._LatencyCollector().collect()))
        samples = {
            (s.name, s.labels.get("le"), s.labels["transport"]): s.value for s in family.samples
        }
        assert samples[("hokusai_check_duration_seconds_bucket", "0.004096", "http")] == 1
        assert samples[("hokusai_check_duration_seconds_bucket", "0.002048", "http")] == 0
        assert samples[("hokusai_check_duration_seconds_bucket", "+Inf", "grpc")] == 1
        assert samples[("hokusai_check_duration_seconds_count", None, "grpc")] == 1
    finally:
        telemetry._latency = saved


# --- inputs built by position ----------------------------------------------------------------
def test_positional_inputs_have_the_fields_the_transports_fill() -> None:
    """The transports build CheckInput and CredentialSources from tuples in field order (in C,
    no keyword ``__new__``): a field added or moved must be added there too."""
    from authz.check.checker import CheckInput, new_check_input
    from authz.check.credentials import CredentialSources, new_sources

    assert CredentialSources._fields == ("authorization", "api_key_header", "query", "repeated")
    assert CheckInput._fields == (
        "method",
        "path",
        "sources",
        "client_address",
        "any_scope",
        "browser",
        "body",
    )
    sources = new_sources(("Bearer x", None, "a=1", False))
    assert (
        sources == CredentialSources("Bearer x", None, "a=1") and type(sources) is CredentialSources
    )
    built = new_check_input(("GET", "/p?a=1", sources, "192.0.2.1", False, None, None))
    assert built == CheckInput("GET", "/p?a=1", sources, "192.0.2.1")
    assert type(built) is CheckInput and built.client_address == "192.0.2.1"


def test_pooled_verdicts_have_the_fields_the_lease_limiter_fills() -> None:
    """``leases._verdict`` builds a pooled token's Verdict from a tuple in field order."""
    from authz.ratelimit.gcra import Limit, Verdict
    from authz.ratelimit.leases import _verdict

    assert Verdict._fields == (
        "allowed",
        "limit",
        "remaining",
        "reset_after",
        "retry_after",
        "degraded",
    )
    limit = Limit(3600, 10)
    assert _verdict((True, limit, 4, 1.5, 0.0, False)) == Verdict(True, limit, 4, 1.5)
