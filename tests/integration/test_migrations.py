"""The migration runner and what 0001_initial promises: audit trigger, hash chain, NOTIFY.

The runner tests run every migration on disk (``ALL``), so a new one needs no edit here; what a
later migration itself promises is tested beside its feature (0002_sessions:
tests/integration/test_sessions.py), except that 0003_events_policy applies on 0001 alone
(below)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from authz.errors import DatabaseUnavailable, MigrationError
from authz.storage.db import connect, redact_url
from authz.storage.migrations import discover, migrate, rollback, status
from tests.conftest import with_database

TABLES = {"users", "api_keys", "api_key_usage", "audit_log"}  # 0001's; later ones add theirs
ALL = [m.version for m in discover()]


@pytest.fixture
def empty_database_url(postgres_server_url: str) -> Iterator[str]:
    name = f"e_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield with_database(postgres_server_url, name)
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows} - {"schema_migrations"}


# --- the runner ----------------------------------------------------------------------------
def test_up_down_up(empty_database_url):
    assert migrate(empty_database_url) == ALL
    everything = _tables(empty_database_url)
    assert everything >= TABLES
    assert [s.version for s in status(empty_database_url) if s.applied_at] == ALL
    assert rollback(empty_database_url) == ALL[-1:]  # the latest only
    assert rollback(empty_database_url, to=0) == ALL[-2::-1]
    assert _tables(empty_database_url) == set()
    assert status(empty_database_url)[0].applied_at is None
    assert migrate(empty_database_url) == ALL
    assert _tables(empty_database_url) == everything


def test_migrate_twice_is_a_no_op(database_url):
    assert migrate(database_url) == []
    assert rollback(database_url, to=0) == ALL[::-1]
    assert rollback(database_url, to=0) == []


def test_concurrent_migrations_apply_once(empty_database_url):
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(empty_database_url))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sorted(results) == [[], [], [], ALL]


def test_a_failing_migration_leaves_the_previous_version(tmp_path, empty_database_url):
    (tmp_path / "0001_one.up.sql").write_text("CREATE TABLE one (x int);")
    (tmp_path / "0001_one.down.sql").write_text("DROP TABLE one;")
    (tmp_path / "0002_two.up.sql").write_text("CREATE TABLE two (x int); SELECT nonsense;")
    (tmp_path / "0002_two.down.sql").write_text("DROP TABLE two;")
    with pytest.raises(MigrationError, match="applying 0002_two") as info:
        migrate(empty_database_url, tmp_path)
    assert "\n" not in str(info.value)
    assert [s.applied_at is not None for s in status(empty_database_url, tmp_path)] == [True, False]
    assert _tables(empty_database_url) == {"one"}


def test_discover_requires_a_down_migration(tmp_path):
    (tmp_path / "0001_one.up.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"has no 0001_one\.down\.sql"):
        discover(tmp_path)
    assert [m.label for m in discover()][:1] == ["0001_initial"]


def test_unreachable_database_is_one_line_without_the_password():
    url = f"postgresql://hokusai:s3cret-pw@127.0.0.1:{_closed_port()}/hokusai"
    with pytest.raises(MigrationError) as info:
        migrate(url)
    message = str(info.value)
    assert "127.0.0.1" in message and "s3cret-pw" not in message and "\n" not in message
    with pytest.raises(DatabaseUnavailable) as unavailable:
        connect(url, timeout=1)
    assert "s3cret-pw" not in str(unavailable.value)


def _closed_port() -> int:
    from cli.servers import free_port

    return free_port()


def test_wrong_password_error_does_not_show_it(postgres_server_url):
    url = with_database(postgres_server_url, "hokusai").replace("@", "x-wrong-pw@", 1)
    with pytest.raises(MigrationError) as info:
        migrate(url)
    assert "x-wrong-pw" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h:5/d", "postgresql://u:***@h:5/d"),
        ("postgresql://u@h/d", "postgresql://u@h/d"),
        (
            "postgresql://h/d?password=pw&sslmode=require",
            "postgresql://h/d?password=***&sslmode=require",
        ),
        ("host=h password=pw user=u", "host=h password=*** user=u"),
        ("host=h password='p w' user=u", "host=h password=*** user=u"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


# --- the schema: audit, hash chain, notifications, version ---------------------------------
def _add_user(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "INSERT INTO users (email) VALUES (%s) RETURNING id", [f"{secrets.token_hex(4)}@x.io"]
    ).fetchone()
    assert row is not None
    return int(row[0])


def _add_key(conn: psycopg.Connection, user_id: int) -> str:
    key_id = secrets.token_hex(6)
    conn.execute(
        "INSERT INTO api_keys (key_id, secret_hash, display_prefix, user_id, name, env)"
        " VALUES (%s, 'bcrypt-hash', 'hk_test_', %s, 'ci', 'test')",
        [key_id, user_id],
    )
    return key_id


def _audit(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT action, key_id, actor, changes FROM audit_log ORDER BY id"
    ).fetchall()


def test_raw_sql_changes_are_audited_with_the_actor(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        key_id = _add_key(conn, _add_user(conn))
        with conn.transaction():
            conn.execute("SET LOCAL hokusai.actor = 'cli:alice'")
            conn.execute("UPDATE api_keys SET name = 'renamed' WHERE key_id = %s", [key_id])
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s", [key_id])
        rows = _audit(conn)
    assert [(a, k, who) for a, k, who, _ in rows] == [
        ("create", key_id, "db:hokusai"),
        ("update", key_id, "cli:alice"),
        ("revoke", key_id, "db:hokusai"),
    ]
    assert rows[1][3] == {"name": {"old": "ci", "new": "renamed"}}
    assert all("secret_hash" not in changes for *_, changes in rows[:2])


def test_the_hash_chain_recomputes(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        user = _add_user(conn)
        for _ in range(3):
            key_id = _add_key(conn, user)
            conn.execute("UPDATE api_keys SET scopes = '{read}' WHERE key_id = %s", [key_id])
        rows = conn.execute(
            "SELECT prev_hash, hash, hokusai_audit_hash(id, at, action, key_id, actor, changes,"
            " prev_hash) FROM audit_log ORDER BY id"
        ).fetchall()
    assert len(rows) == 6
    previous = "0" * 64
    for prev_hash, stored, recomputed in rows:
        assert prev_hash == previous and stored == recomputed
        previous = stored


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log", "TRUNCATE audit_log"],
)
def test_the_audit_log_is_append_only(database_url, statement):
    with psycopg.connect(database_url, autocommit=True) as conn:
        _add_key(conn, _add_user(conn))
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute(statement)
        assert len(_audit(conn)) == 1


def test_notify_on_change_but_not_on_last_used(database_url):
    with (
        psycopg.connect(database_url, autocommit=True) as listener,
        psycopg.connect(database_url, autocommit=True) as conn,
    ):
        listener.execute("LISTEN hokusai_keys")
        user = _add_user(conn)
        first = _add_key(conn, user)
        second = _add_key(conn, user)
        conn.execute("UPDATE api_keys SET last_used_at = now() WHERE key_id = %s", [first])
        conn.execute("UPDATE api_keys SET name = 'changed' WHERE key_id = %s", [second])
        # Notifications arrive in commit order: the last_used_at update, had it notified,
        # would show up between the two inserts and the rename.
        payloads = [n.payload for n in listener.notifies(timeout=10, stop_after=3)]
        audited = [(a, k) for a, k, *_ in _audit(conn)]
    assert payloads == [first, second, second]
    assert audited == [("create", first), ("create", second), ("update", second)]


def test_version_bumps_on_change_only(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        key_id = _add_key(conn, _add_user(conn))

        def version() -> int:
            row = conn.execute(
                "SELECT version FROM api_keys WHERE key_id = %s", [key_id]
            ).fetchone()
            assert row is not None
            return int(row[0])

        assert version() == 1
        conn.execute("UPDATE api_keys SET expires_at = now() WHERE key_id = %s", [key_id])
        assert version() == 2
        conn.execute("UPDATE api_keys SET last_used_at = now() WHERE key_id = %s", [key_id])
        conn.execute("UPDATE api_keys SET name = name WHERE key_id = %s", [key_id])
        assert version() == 2


def test_migrations_folder_defaults_to_the_repository():
    assert Path(discover()[0].up).parent.name == "migrations"


# --- 0003_events_policy -------------------------------------------------------------------------
def test_0003_stands_alone_and_rolls_back(tmp_path, empty_database_url):
    """0003 needs only 0001 (not 0002, sessions): applied on 0001 alone, undone cleanly."""
    for migration in discover():
        if migration.version in (1, 3):
            for path in (migration.up, migration.down):
                (tmp_path / path.name).write_bytes(path.read_bytes())
    assert migrate(empty_database_url, tmp_path) == [1, 3]
    assert _tables(empty_database_url) == TABLES | {
        "auth_events",
        "key_policy",
        "webhook_deliveries",
    }
    assert rollback(empty_database_url, directory=tmp_path) == [3]
    assert _tables(empty_database_url) == TABLES


def test_a_policy_change_is_audited_and_announced(database_url):
    with connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN hokusai_keys")
        with psycopg.connect(database_url) as conn:
            conn.execute("SELECT set_config('hokusai.actor', 'test:policy', false)")
            conn.execute("UPDATE key_policy SET inactivity_expiry = interval '30 days'")
            conn.execute("UPDATE key_policy SET inactivity_expiry = interval '30 days'")  # no-op
        notes = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]
    assert notes == [":policy"]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT action, key_id, actor, changes FROM audit_log WHERE action = 'policy.update'"
        ).fetchall()
        version = conn.execute("SELECT version FROM key_policy").fetchone()
    assert len(rows) == 1 and rows[0][:3] == ("policy.update", None, "test:policy")
    assert rows[0][3]["inactivity_expiry"]["old"] is None
    assert version == (1,)  # raw SQL leaves it; hokusai's writes bump it (test_events_policy)
