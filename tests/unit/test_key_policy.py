"""The central key policy as a value (authz/keys/policy.py), its check-time phase, the expiry
rules of management, and the Envoy mappers that name an unreachable upstream — no I/O."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from authz.check.checker import Checker, CheckInput, CheckPolicy, Decision
from authz.check.credentials import CredentialSources
from authz.check.reasons import Reason
from authz.check.verify import SecretVerifier
from authz.errors import InvalidInput
from authz.keys import format as key_format
from authz.keys.policy import Deadlines, KeyPolicy
from authz.keys.record import KeyRecord
from authz.management.expiry import ExpiryPolicy
from authz.management.policy import PolicyUpdate, columns, parse_pairs
from authz.storage.cache import LocalCache
from authz.storage.lookup import RecordLookup
from authz.storage.store import MemoryKeyStore
from cli import envoy_config

DAY = 86400.0
NOW = 1_000 * DAY
POLICY = KeyPolicy(
    max_lifetime=365 * DAY,
    max_lifetime_scope={"admin": 30 * DAY},
    max_lifetime_env={"test": 7 * DAY},
    inactivity_expiry=60 * DAY,
    version=4,
)


def record(
    scopes: frozenset[str] = frozenset({"mlflow:read"}),
    env: str = "live",
    created: float = NOW - DAY,
    last_used: float | None = None,
    key: key_format.NewKey | None = None,
) -> KeyRecord:
    key = key or key_format.generate(env)
    return KeyRecord(
        key_id=key.parsed.key_id,
        user_id=3,
        env=env,
        secret_hash=key_format.hash_secret(key.parsed.secret, 4),
        scopes=scopes,
        expires_at=None,
        revoked_at=None,
        networks=(),
        rate_limit_per_hour=None,
        burst=None,
        version=1,
        created_at=created,
        last_used_at=last_used,
    )


def test_the_smallest_matching_lifetime_wins() -> None:
    assert POLICY.max_lifetime_for({"mlflow:read"}, "live") == 365 * DAY
    assert POLICY.max_lifetime_for({"admin", "mlflow:read"}, "live") == 30 * DAY
    assert POLICY.max_lifetime_for({"admin"}, "test") == 7 * DAY
    assert KeyPolicy().max_lifetime_for({"admin"}, "live") is None
    assert not KeyPolicy(require_expiry_live=True).enforces_at_check
    assert KeyPolicy(require_expiry_live=True).must_expire("live")
    assert not KeyPolicy(require_expiry_live=True).must_expire("test")


def test_deadlines_from_creation_and_last_use() -> None:
    fresh = record(created=NOW - 20 * DAY, last_used=NOW - 10 * DAY)
    assert POLICY.deadlines(fresh) == (NOW - 20 * DAY + 365 * DAY, NOW - 10 * DAY + 60 * DAY)
    never_used = record(created=NOW - 100 * DAY)
    assert POLICY.deadlines(never_used)[1] == NOW - 40 * DAY
    unknown_age = record(created=0.0)  # a record cached before the upgrade: no rule applies yet
    assert POLICY.deadlines(unknown_age) == (None, None)


def test_deadlines_are_memoised_per_record_and_policy_object() -> None:
    memo, one = Deadlines(), record()
    first = memo.of(POLICY, one)
    assert memo.of(POLICY, one) is not None and memo.of(POLICY, one) == first
    same_version = dataclasses.replace(POLICY, inactivity_expiry=DAY)  # e.g. a raw-SQL change
    assert memo.of(same_version, one) != first


def checker(*records: KeyRecord, on_denied: object = None) -> Checker:
    lookup = RecordLookup(LocalCache(60, 1, 300, 100), None, MemoryKeyStore(records))
    return Checker(
        CheckPolicy(frozenset({"live", "test"}), True),
        lookup,
        SecretVerifier(b"pepper", 1),
        clock=lambda: NOW,
        on_denied=on_denied,  # type: ignore[arg-type]
    )


def request(token: str) -> CheckInput:
    path = "/api/mlflow/api/2.0/mlflow/experiments/get"
    return CheckInput("GET", path, CredentialSources(f"Bearer {token}", None, ""), "10.0.0.1")


def test_existing_keys_are_held_to_the_policy_at_check_time() -> None:
    old_key, idle_key, ok_key = (key_format.generate("live") for _ in range(3))
    old = record(created=NOW - 400 * DAY, last_used=NOW - DAY, key=old_key)
    idle = record(created=NOW - 100 * DAY, last_used=NOW - 61 * DAY, key=idle_key)
    ok = record(key=ok_key)
    seen: list[tuple[str, str]] = []
    check = checker(old, idle, ok, on_denied=lambda d, _r: seen.append((d.key_id, d.reason)))
    try:
        for key in (old_key, idle_key, ok_key):  # no policy yet: all pass
            assert asyncio.run(check.check(request(key.token))).allowed
        check.key_policy = POLICY
        decisions = [check.check_now(request(k.token)) for k in (old_key, idle_key, ok_key)]
        assert [d.reason if d else None for d in decisions] == [
            Reason.EXPIRED,
            Reason.INACTIVE,
            Reason.ALLOWED,
        ]
        assert seen == [(old.key_id, Reason.EXPIRED), (idle.key_id, Reason.INACTIVE)]
        refused = decisions[1]
        assert isinstance(refused, Decision) and refused.record is idle  # its user, for events
    finally:
        check.verifier.close()


def test_management_expiry_rules() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    rules = ExpiryPolicy(POLICY, lambda: now)
    assert rules.resolve(None, None, scopes=["admin"], env="live") == now + timedelta(days=30)
    with pytest.raises(InvalidInput, match="maximum key lifetime of 30d"):
        rules.resolve(None, timedelta(days=31), scopes=["admin"], env="live")
    assert rules.capped(timedelta(days=400), ["mlflow:read"], "live") == timedelta(days=365)
    strict = ExpiryPolicy(KeyPolicy(require_expiry_live=True), lambda: now)
    with pytest.raises(InvalidInput, match="live keys must expire"):
        strict.resolve(None, None, scopes=["mlflow:read"], env="live")
    assert strict.resolve(None, None, scopes=["mlflow:read"], env="test") is None


def test_policy_updates_are_validated() -> None:
    current = KeyPolicy(max_lifetime_scope={"admin": 7 * DAY})
    update = PolicyUpdate(
        max_lifetime="90d", max_lifetime_scope={"admin": "off", "keys:manage": "14d"}
    )
    assert columns(update, current) == {
        "max_lifetime": 90 * DAY,
        "max_lifetime_scope": {"keys:manage": 14 * DAY},
    }
    for bad, needle in (
        (PolicyUpdate(), "nothing to change"),
        (PolicyUpdate(max_lifetime="soon"), "malformed duration"),
        (PolicyUpdate(max_lifetime="0s"), "must be positive"),
        (PolicyUpdate(max_lifetime_env={"prod": "1d"}), "unknown env"),
    ):
        with pytest.raises(InvalidInput, match=needle):
            columns(bad, current)
    assert parse_pairs(["admin=7d", " live = off "], "x") == {"admin": "7d", "live": "off"}
    with pytest.raises(InvalidInput, match="NAME=DURATION"):
        parse_pairs(["admin"], "x")


def test_upstream_outages_are_named_before_the_key_check() -> None:
    mappers = envoy_config.local_reply_config(envoy_config.EnvoyOptions())["mappers"]
    bodies = [m["body"]["inline_string"] for m in mappers]
    assert '"mlflow_unavailable"' in bodies[0] and '"keys_api_unavailable"' in bodies[1]
    assert '"unavailable"' in bodies[2]  # authz itself: the generic 503 comes after them
    flags = mappers[0]["filter"]["and_filter"]["filters"][1]["response_flag_filter"]["flags"]
    assert {"UF", "UH"} <= set(flags) and "UAEX" not in flags  # ext_authz failures stay ours
