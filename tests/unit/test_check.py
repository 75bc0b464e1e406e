"""The check pipeline with in-memory fakes: every decision, caching and single-flight."""

from __future__ import annotations

import asyncio
import ipaddress
import time

import pytest

from authz.check.checker import Checker, CheckInput, CheckPolicy
from authz.check.credentials import CredentialSources
from authz.check.reasons import Reason
from authz.check.verify import SecretVerifier
from authz.keys import format as keys
from authz.keys.record import KeyRecord
from authz.storage.cache import LocalCache
from authz.storage.lookup import RecordLookup
from authz.storage.store import MemoryKeyStore
from tests.corpus import Case, corpus

COST = 4


def make_record(new: keys.NewKey, **changes: object) -> KeyRecord:
    fields: dict[str, object] = dict(
        key_id=new.parsed.key_id,
        user_id=7,
        env=new.parsed.env,
        secret_hash=keys.hash_secret(new.parsed.secret, COST),
        scopes=frozenset({"mlflow:read"}),
        expires_at=None,
        revoked_at=None,
        networks=(),
        rate_limit_per_hour=None,
        burst=None,
        version=1,
    )
    fields.update(changes)
    return KeyRecord(**fields)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def build(
    records: list[KeyRecord], clock: Clock | None = None, envs: frozenset[str] = frozenset({"live"})
) -> tuple[Checker, MemoryKeyStore]:
    store = MemoryKeyStore(records)
    mono = clock or Clock()
    local: LocalCache[KeyRecord] = LocalCache(
        ttl=10, negative_ttl=1, stale_window=300, size=1000, clock=mono
    )
    lookup = RecordLookup(local, None, store)
    verifier = SecretVerifier(b"pepper", threads=2)
    return Checker(CheckPolicy(envs, True), lookup, verifier, clock=time.time), store


def request(case: Case, client: str = "10.0.0.1") -> CheckInput:
    auth = [v for k, v in case.headers if k == "authorization"]
    api = [v for k, v in case.headers if k == "x-api-key"]
    return CheckInput(
        method=case.method,
        path=case.path + ("?" + case.query if case.query else ""),
        sources=CredentialSources(
            authorization=auth[0] if auth else None,
            api_key_header=api[0] if api else None,
            query=case.query,
            repeated=len(auth) > 1 or len(api) > 1,
        ),
        client_address=client,
    )


@pytest.fixture(scope="module")
def fixture_keys() -> dict[str, keys.NewKey]:
    return {
        name: keys.generate(env)
        for name, env in (
            ("valid", "live"),
            ("revoked", "live"),
            ("unknown", "live"),
            ("test", "test"),
        )
    }


def corpus_cases(fixture_keys: dict[str, keys.NewKey]) -> list[Case]:
    return corpus(
        fixture_keys["valid"].token,
        fixture_keys["revoked"].token,
        fixture_keys["unknown"].token,
        fixture_keys["test"].token,
    )


def test_bad_input_corpus(fixture_keys: dict[str, keys.NewKey]) -> None:
    records = [
        make_record(fixture_keys["valid"]),
        make_record(fixture_keys["revoked"], revoked_at=time.time() - 5),
    ]
    checker, _store = build(records)

    async def run() -> None:
        for case in corpus_cases(fixture_keys):
            decision = await checker.check(request(case))
            assert decision.reason.value == case.expected, case.name

    asyncio.run(run())


def test_no_io_before_the_lookup(fixture_keys: dict[str, keys.NewKey]) -> None:
    checker, store = build([make_record(fixture_keys["valid"])])

    async def run() -> None:
        for case in corpus_cases(fixture_keys):
            if case.expected in {
                "missing_key",
                "malformed_key",
                "multiple_credentials",
                "wrong_environment",
            }:
                await checker.check(request(case))
        assert store.fetches == 0

    asyncio.run(run())


def test_warm_check_needs_no_io_and_no_bcrypt(fixture_keys: dict[str, keys.NewKey]) -> None:
    valid = fixture_keys["valid"]
    checker, store = build([make_record(valid)])
    case = Case("valid", "allowed", (("authorization", f"Bearer {valid.token}"),))

    async def run() -> None:
        assert checker.check_now(request(case)) is None  # cold: needs I/O
        assert (await checker.check(request(case))).allowed
        for _ in range(5):
            decision = checker.check_now(request(case))
            assert decision is not None and decision.allowed
        wrong = keys.generate("live", valid.parsed.key_id).token
        denied = checker.check_now(request(Case("w", "", (("authorization", f"Bearer {wrong}"),))))
        assert denied is not None and denied.reason is Reason.INVALID_SECRET
        assert store.fetches == 1
        assert checker.verifier.bcrypt_runs == 1

    asyncio.run(run())


def test_concurrent_cold_checks_share_one_bcrypt_and_one_fetch(
    fixture_keys: dict[str, keys.NewKey],
) -> None:
    valid = fixture_keys["valid"]
    checker, store = build([make_record(valid)])
    case = Case("valid", "allowed", (("authorization", f"Bearer {valid.token}"),))

    async def run() -> None:
        decisions = await asyncio.gather(*(checker.check(request(case)) for _ in range(20)))
        assert all(d.allowed for d in decisions)
        assert store.fetches == 1
        assert checker.verifier.bcrypt_runs == 1

    asyncio.run(run())


def test_unknown_key_is_negatively_cached(fixture_keys: dict[str, keys.NewKey]) -> None:
    checker, store = build([])
    case = Case("u", "", (("authorization", f"Bearer {fixture_keys['unknown'].token}"),))

    async def run() -> None:
        for _ in range(10):
            assert (await checker.check(request(case))).reason is Reason.UNKNOWN_KEY
        assert store.fetches == 1

    asyncio.run(run())


def test_expiry_is_checked_on_every_request(fixture_keys: dict[str, keys.NewKey]) -> None:
    valid = fixture_keys["valid"]
    wall = Clock()
    store = MemoryKeyStore([make_record(valid, expires_at=wall.now + 1)])
    local: LocalCache[KeyRecord] = LocalCache(ttl=60, negative_ttl=1, stale_window=300, size=10)
    checker = Checker(
        CheckPolicy(frozenset({"live"}), True),
        RecordLookup(local, None, store),
        SecretVerifier(b"p", 1),
        clock=wall,
    )
    case = Case("v", "", (("authorization", f"Bearer {valid.token}"),))

    async def run() -> None:
        assert (await checker.check(request(case))).allowed
        wall.now += 2
        assert (await checker.check(request(case))).reason is Reason.EXPIRED

    asyncio.run(run())


def test_ip_allowlist(fixture_keys: dict[str, keys.NewKey]) -> None:
    valid = fixture_keys["valid"]
    record = make_record(valid, networks=(ipaddress.ip_network("192.0.2.0/24"),))
    checker, _ = build([record])
    case = Case("v", "", (("authorization", f"Bearer {valid.token}"),))

    async def run() -> None:
        assert (await checker.check(request(case, "192.0.2.9"))).allowed
        assert (await checker.check(request(case, "::ffff:192.0.2.9"))).allowed
        denied = await checker.check(request(case, "198.51.100.1"))
        assert denied.reason is Reason.IP_NOT_ALLOWED
        assert (await checker.check(request(case, "garbage"))).reason is Reason.IP_NOT_ALLOWED

    asyncio.run(run())


def test_store_down_serves_recent_records_only(fixture_keys: dict[str, keys.NewKey]) -> None:
    valid, other = fixture_keys["valid"], fixture_keys["unknown"]
    mono = Clock()
    checker, store = build([make_record(valid), make_record(other)], clock=mono)
    case = Case("v", "", (("authorization", f"Bearer {valid.token}"),))
    cold = Case("o", "", (("authorization", f"Bearer {other.token}"),))

    async def run() -> None:
        assert (await checker.check(request(case))).allowed
        store.down = True
        mono.now += 20  # past the local TTL, within the stale window
        assert (await checker.check(request(case))).allowed
        assert (await checker.check(request(cold))).reason is Reason.UNAVAILABLE
        mono.now += 400  # past the stale window
        assert (await checker.check(request(case))).reason is Reason.UNAVAILABLE

    asyncio.run(run())


def test_invalidation_drops_the_record(fixture_keys: dict[str, keys.NewKey]) -> None:
    valid = fixture_keys["valid"]
    checker, store = build([make_record(valid)])
    case = Case("v", "", (("authorization", f"Bearer {valid.token}"),))

    async def run() -> None:
        assert (await checker.check(request(case))).allowed
        store.records[valid.parsed.key_id] = make_record(valid, revoked_at=time.time(), version=2)
        await checker.lookup.invalidate(valid.parsed.key_id)
        assert (await checker.check(request(case))).reason is Reason.REVOKED

    asyncio.run(run())


def test_a_flood_of_random_keys_is_bounded_and_valid_keys_stay_warm(
    fixture_keys: dict[str, keys.NewKey],
) -> None:
    valid = fixture_keys["valid"]
    checker, store = build([make_record(valid)])
    good = Case("v", "", (("authorization", f"Bearer {valid.token}"),))
    flood = [
        Case("r", "", (("authorization", f"Bearer {keys.generate('live').token}"),))
        for _ in range(200)
    ]

    async def run() -> None:
        assert (await checker.check(request(good))).allowed
        before = store.fetches
        results = await asyncio.gather(*(checker.check(request(c)) for c in flood * 3))
        assert {r.reason for r in results} == {Reason.UNKNOWN_KEY}
        assert store.fetches - before == len(flood)  # one lookup per id, then negative cache
        warm = checker.check_now(request(good))  # no I/O, no waiting behind the flood
        assert warm is not None and warm.allowed
        assert checker.verifier.bcrypt_runs == 1

    asyncio.run(run())
