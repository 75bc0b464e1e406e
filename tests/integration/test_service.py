"""The key service against a real, freshly migrated Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from authz.errors import Conflict, InvalidInput, NotFound, StoreUnavailable
from authz.keys import format as keys
from authz.management.policy import PolicyUpdate
from authz.management.service import KeyService
from authz.management.views import KeyChanges, status_of
from authz.settings import Settings
from authz.storage.db import connector

SETTINGS = Settings().replace(bcrypt_cost=4)  # the cheapest cost keeps the tests fast


@pytest.fixture
def service(database_url: str) -> KeyService:
    return KeyService(connector(database_url), SETTINGS, "test:service")


def count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_create_stores_a_hash_that_verifies_and_no_secret(service, database_url):
    view, new = service.create_key(
        user_email="Ann@Example.com",
        name="laptop",
        scopes=["mlflow:write", "mlflow:read", "mlflow:read"],
        allowed_ips=["10.0.0.0/8", "192.168.1.7"],
        metadata={"team": "ml"},
        rate_limit_per_hour=1000,
        burst=50,
    )
    assert view.user_email == "ann@example.com"
    assert view.scopes == ("mlflow:read", "mlflow:write")
    assert view.allowed_ips == ("10.0.0.0/8", "192.168.1.7/32")
    assert view.status == "active" and view.expires_at is None
    assert keys.parse(new.token) == new.parsed
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT secret_hash, api_keys::text FROM api_keys").fetchone()
        audit = conn.execute(
            "SELECT string_agg(changes::text || actor, ' ') FROM audit_log"
        ).fetchone()
    assert row is not None and audit is not None
    assert keys.verify_secret(new.parsed.secret, row[0])
    assert new.parsed.secret not in row[1] and new.parsed.secret not in audit[0]
    assert "secret_hash" not in view.to_json() and new.token not in str(view.to_json())
    assert "test:service" in audit[0]


def test_second_key_reuses_the_user(service, database_url):
    first, _ = service.create_key(user_email="bob@example.com", name="a")
    second, _ = service.create_key(user_email="BOB@example.com", name="b")
    assert first.user_id == second.user_id
    assert count(database_url, "users") == 1


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"scopes": ["mlflow:delete"]}, "unknown scope"),
        ({"scopes": []}, "at least one scope"),
        ({"expires_at": datetime(2001, 1, 1, tzinfo=UTC)}, "in the past"),
        ({"expires_in": timedelta(seconds=-5)}, "positive"),
        ({"allowed_ips": ["10.0.0.1/8"]}, "did you mean 10.0.0.0/8"),
        ({"allowed_ips": ["not-an-ip"]}, "bad CIDR"),
        ({"rate_limit_per_hour": -1}, "rate limit"),
        ({"burst": -1}, "burst"),
        ({"name": "  "}, "must not be empty"),
        ({"name": "x" * 201}, "longer than 200"),
        ({"user_email": "no-at-sign"}, "e-mail"),
        ({"metadata": {"bad key": "v"}}, "metadata key"),
        ({"env": "prod"}, "environment"),
    ],
)
def test_create_rejects_bad_input_and_writes_nothing(service, database_url, kwargs, needle):
    arguments = {"user_email": "c@example.com", "name": "k", **kwargs}
    with pytest.raises(InvalidInput, match=needle):
        service.create_key(**arguments)
    assert count(database_url, "api_keys") == 0 and count(database_url, "users") == 0


def test_max_lifetime_policy(database_url):
    strict = KeyService(connector(database_url), SETTINGS, "test:policy")
    strict.set_policy(PolicyUpdate(max_lifetime="30d"))
    view, _ = strict.create_key(user_email="d@example.com", name="default")
    assert view.expires_at is not None
    assert view.expires_at - view.created_at <= timedelta(days=30, seconds=1)
    with pytest.raises(InvalidInput, match="maximum key lifetime"):
        strict.create_key(user_email="d@example.com", name="long", expires_in=timedelta(days=31))
    with pytest.raises(InvalidInput, match="must expire"):
        strict.update_key(view.key_id, KeyChanges(clear_expiry=True))


def test_update_changes_and_validates(service):
    view, _ = service.create_key(user_email="e@example.com", name="old")
    updated = service.update_key(
        view.display_prefix,
        KeyChanges(
            name="new",
            scopes=["admin"],
            expires_in=timedelta(days=3),
            rate_limit_per_hour=60,
            burst=5,
            allowed_ips=["2001:db8::/32"],
            metadata={"ticket": "OPS-1"},
        ),
    )
    assert (updated.name, updated.scopes, updated.status) == ("new", ("admin",), "expiring_soon")
    assert updated.allowed_ips == ("2001:db8::/32",) and updated.metadata == {"ticket": "OPS-1"}
    cleared = service.update_key(view.key_id, KeyChanges(clear_expiry=True, allowed_ips=[]))
    assert cleared.expires_at is None and cleared.allowed_ips == ()
    with pytest.raises(InvalidInput):
        service.update_key(view.key_id, KeyChanges(allowed_ips=["300.1.1.1"]))
    assert service.get_key(view.key_id) == cleared


def test_revoke_is_idempotent_and_final(service):
    view, _ = service.create_key(user_email="f@example.com", name="k")
    revoked, already = service.revoke_key(view.key_id, "leaked")
    assert (revoked.status, revoked.revoked_reason, already) == ("revoked", "leaked", False)
    again, already = service.revoke_key(view.key_id, "other")
    assert already and again.revoked_at == revoked.revoked_at and again.revoked_reason == "leaked"
    with pytest.raises(Conflict):
        service.update_key(view.key_id, KeyChanges(name="x"))
    with pytest.raises(Conflict):
        service.rotate_key(view.key_id)
    assert service.list_keys() == [] and len(service.list_keys(include_inactive=True)) == 1


def test_rotation_copies_settings_and_bounds_the_old_key(service):
    old, _ = service.create_key(
        user_email="g@example.com",
        name="ci",
        env="test",
        scopes=["mlflow:read", "keys:manage"],
        rate_limit_per_hour=100,
        burst=7,
        allowed_ips=["10.1.0.0/16"],
        metadata={"a": "b"},
        expires_in=timedelta(days=90),
    )
    assert old.expires_at is not None
    rotation = service.rotate_key(old.key_id, timedelta(hours=2))
    new, previous = rotation.new, rotation.old
    assert new.rotated_from == old.key_id and new.key_id != old.key_id
    assert rotation.token.parsed.key_id == new.key_id and new.env == "test"
    for field in (
        "user_id",
        "name",
        "scopes",
        "rate_limit_per_hour",
        "burst",
        "allowed_ips",
        "metadata",
    ):
        assert getattr(new, field) == getattr(old, field), field
    assert previous.expires_at is not None and new.expires_at is not None
    assert previous.expires_at <= datetime.now(UTC) + timedelta(hours=2)
    assert previous.status == "expiring_soon" and new.status == "active"
    assert new.expires_at > old.expires_at  # the lifetime restarts
    # A grace longer than the remaining life never extends the old key.
    again = service.rotate_key(new.key_id, timedelta(days=365))
    assert again.old.expires_at == new.expires_at


def test_unknown_and_malformed_ids(service):
    with pytest.raises(NotFound):
        service.get_key("AAAAAAAAAAAA")
    with pytest.raises(NotFound):
        service.revoke_key("hk_live_AAAAAAAAAAAA")
    with pytest.raises(InvalidInput):
        service.get_key("short")
    token = keys.generate("live").token
    with pytest.raises(InvalidInput) as caught:
        service.get_key(token)
    assert token not in str(caught.value) and token[21:] not in str(caught.value)


def test_audit_entries_and_chain(service, database_url):
    view, _ = service.create_key(user_email="h@example.com", name="k")
    service.update_key(view.key_id, KeyChanges(name="k2"))
    service.revoke_key(view.key_id)
    # A change made with raw SQL, bypassing the service, is audited too (as the db user).
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE api_keys SET name = 'raw' WHERE key_id = %s", [view.key_id])
    entries = service.audit_entries(key_id=view.key_id)
    assert [e.action for e in entries] == ["create", "update", "revoke", "update"]
    assert [e.actor for e in entries][:3] == ["test:service"] * 3
    assert entries[3].actor.startswith("db:")
    assert entries[1].changes["name"] == {"old": "k", "new": "k2"}
    assert [e.action for e in service.audit_entries(action="revoke")] == ["revoke"]
    assert service.audit_entries(since=datetime.now(UTC) + timedelta(hours=1)) == []
    assert service.verify_audit_chain().ok
    assert service.verify_audit_chain().rows_checked == 4


def test_tampering_is_found(service, database_url):
    for name in ("a", "b", "c"):
        service.create_key(user_email="i@example.com", name=name)
    with psycopg.connect(database_url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM audit_log ORDER BY id")]
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_immutable")
        conn.execute("UPDATE audit_log SET actor = 'nobody' WHERE id = %s", [ids[1]])
    result = service.verify_audit_chain()
    assert (result.ok, result.first_broken_id) == (False, ids[1])
    assert result.reason is not None and "hash" in result.reason


def test_deleted_row_breaks_the_link(service, database_url):
    for name in ("a", "b", "c"):
        service.create_key(user_email="j@example.com", name=name)
    with psycopg.connect(database_url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM audit_log ORDER BY id")]
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_immutable")
        conn.execute("DELETE FROM audit_log WHERE id = %s", [ids[1]])
    result = service.verify_audit_chain()
    assert (result.ok, result.first_broken_id) == (False, ids[2])


def test_notify_on_create_update_revoke(service, database_url):
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN hokusai_keys")
        view, _ = service.create_key(user_email="k@example.com", name="k")
        service.update_key(view.key_id, KeyChanges(burst=3))
        service.revoke_key(view.key_id)
        seen = [n.payload for n in listener.notifies(timeout=5, stop_after=3)]
    assert seen == [view.key_id] * 3


def test_unreachable_store():
    dead = KeyService(connector("postgresql://u:hunter2@127.0.0.1:1/x"), SETTINGS, "test")
    with pytest.raises(StoreUnavailable) as caught:
        dead.list_keys()
    assert "127.0.0.1:1" in caught.value.message and "hunter2" not in caught.value.message


def test_status_of():
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert status_of(None, None, now) == "active"
    assert status_of(now + timedelta(days=8), None, now) == "active"
    assert status_of(now + timedelta(days=6), None, now) == "expiring_soon"
    assert status_of(now, None, now) == "expired"
    assert status_of(None, now, now) == "revoked"


def test_rotation_holds_an_old_long_lifetime_to_a_new_maximum(database_url):
    lax = KeyService(connector(database_url), SETTINGS, "test:policy")
    old, _ = lax.create_key(user_email="l@example.com", name="k", expires_in=timedelta(days=400))
    strict = KeyService(connector(database_url), SETTINGS, "test:policy")
    strict.set_policy(PolicyUpdate(max_lifetime="30d"))
    rotation = strict.rotate_key(old.key_id)
    assert rotation.new.expires_at is not None
    assert rotation.new.expires_at - rotation.new.created_at <= timedelta(days=30, seconds=1)
