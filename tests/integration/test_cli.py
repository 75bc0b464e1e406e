"""Every ``hokusai auth`` and ``hokusai db`` command, in-process and as the real console script."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from authz.keys import format as keys
from authz.storage.migrations import discover
from cli.main import main
from tests.support.cli import run_hokusai

ACTOR = f"cli:{getpass.getuser()}"


@pytest.fixture
def cli(database_url, capsys, monkeypatch):
    """Run ``hokusai`` in-process against the test database: (exit code, stdout, stderr)."""
    monkeypatch.delenv("HOKUSAI_DATABASE_URL", raising=False)

    def run(*argv: str, db: bool = True) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*argv, *(["--database-url", database_url] if db else [])])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def counts(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM api_keys),"
            " (SELECT count(*) FROM audit_log)"
        ).fetchone()
    assert row is not None
    return (int(row[0]), int(row[1]), int(row[2]))


def create(cli, *extra: str) -> keys.NewKey:
    code, out, err = cli(
        "auth", "create-key", "--user", "ann@example.com", "--name", "laptop", *extra
    )
    assert code == 0, err
    parsed = keys.parse(out.strip())
    assert parsed is not None, "stdout holds exactly the key"
    return keys.NewKey(parsed, out.strip())


def test_create_prints_the_key_once_with_a_warning(cli, database_url):
    new = create(
        cli,
        "--scopes",
        "mlflow:read,mlflow:write",
        "--expires-in",
        "30d",
        "--rate-limit",
        "1000/h",
        "--burst",
        "50",
        "--allow-ip",
        "10.0.0.0/8",
        "--metadata",
        "team=ml",
    )
    code, out, err = cli("auth", "show-key", new.parsed.key_id, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["scopes"] == ["mlflow:read", "mlflow:write"]
    assert (shown["rate_limit_per_hour"], shown["burst"]) == (1000, 50)
    assert shown["allowed_ips"] == ["10.0.0.0/8"] and shown["metadata"] == {"team": "ml"}
    assert new.token not in out and new.parsed.secret not in out


def test_create_json(cli):
    code, out, err = cli(
        "auth", "create-key", "--user", "b@example.com", "--name", "ci", "--env", "test", "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert keys.parse(data["token"]) is not None and data["key"]["env"] == "test"
    assert data["key"]["key_id"] == keys.parse(data["token"]).key_id  # type: ignore[union-attr]
    assert "not be shown again" in err or "only time" in err
    assert "secret_hash" not in out


def test_warning_goes_to_stderr(cli):
    code, out, err = cli("auth", "create-key", "--user", "c@example.com", "--name", "x")
    assert code == 0
    assert "only time the key is shown" in err and "only time" not in out


def test_list_keys(cli):
    first = create(cli)
    second = create(cli)
    assert cli("auth", "revoke-key", second.parsed.key_id)[0] == 0
    code, out, _ = cli("auth", "list-keys")
    assert code == 0 and first.parsed.key_id in out and second.parsed.key_id not in out
    assert "STATUS" in out and first.parsed.secret not in out
    code, out, _ = cli("auth", "list-keys", "--all", "--json")
    listed = {k["key_id"]: k["status"] for k in json.loads(out)["keys"]}
    assert listed == {first.parsed.key_id: "active", second.parsed.key_id: "revoked"}
    code, out, _ = cli("auth", "list-keys", "--user", "nobody@example.com", "--json")
    assert json.loads(out) == {"keys": []}


def test_show_key_by_id_or_prefix(cli):
    new = create(cli)
    for ref in (new.parsed.key_id, new.parsed.display_prefix):
        code, out, _ = cli("auth", "show-key", ref)
        assert code == 0 and new.parsed.display_prefix in out and "ann@example.com" in out


def test_update_key(cli, database_url):
    new = create(cli)
    code, out, err = cli(
        "auth",
        "update-key",
        new.parsed.key_id,
        "--name",
        "desk",
        "--scopes",
        "admin",
        "--rate-limit",
        "10/min",
        "--allow-ip",
        "192.168.0.0/24",
        "--expires-in",
        "2d",
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert (data["name"], data["scopes"], data["rate_limit_per_hour"]) == ("desk", ["admin"], 600)
    assert data["status"] == "expiring_soon" and data["allowed_ips"] == ["192.168.0.0/24"]
    code, out, _ = cli(
        "auth", "update-key", new.parsed.key_id, "--no-expiry", "--clear-allowed-ips", "--json"
    )
    assert json.loads(out)["expires_at"] is None and json.loads(out)["allowed_ips"] == []
    before = counts(database_url)
    code, _, err = cli("auth", "update-key", new.parsed.key_id)
    assert code == 2 and "nothing to update" in err and counts(database_url) == before


def test_revoke_is_idempotent(cli):
    new = create(cli)
    code, out, _ = cli("auth", "revoke-key", new.parsed.key_id, "--reason", "leaked")
    assert code == 0 and out.startswith("revoked ")
    code, out, _ = cli("auth", "revoke-key", new.parsed.display_prefix)
    assert code == 0 and "already revoked" in out
    code, out, _ = cli("auth", "show-key", new.parsed.key_id, "--json")
    assert json.loads(out)["revoked_reason"] == "leaked"


def test_rotate_key(cli):
    old = create(cli, "--scopes", "mlflow:write", "--burst", "9")
    code, out, err = cli("auth", "rotate-key", old.parsed.key_id, "--grace", "1h")
    assert code == 0, err
    new = keys.parse(out.strip())
    assert new is not None and new.key_id != old.parsed.key_id
    assert "only time the key is shown" in err and "works until" in err
    _, out, _ = cli("auth", "show-key", new.key_id, "--json")
    shown = json.loads(out)
    assert shown["rotated_from"] == old.parsed.key_id
    assert (shown["scopes"], shown["burst"]) == (["mlflow:write"], 9)
    _, out, _ = cli("auth", "show-key", old.parsed.key_id, "--json")
    old_expiry = datetime.fromisoformat(json.loads(out)["expires_at"])
    assert old_expiry <= datetime.now(UTC) + timedelta(hours=1)
    code, out, _ = cli("auth", "rotate-key", new.key_id, "--json")
    assert code == 0 and json.loads(out)["previous"]["key_id"] == new.key_id


def test_rotating_a_revoked_key_fails(cli):
    new = create(cli)
    cli("auth", "revoke-key", new.parsed.key_id)
    code, out, err = cli("auth", "rotate-key", new.parsed.key_id)
    assert code == 1 and "revoked" in err and out == ""


def test_audit_lists_cli_actor(cli):
    new = create(cli)
    cli("auth", "update-key", new.parsed.key_id, "--burst", "3")
    cli("auth", "revoke-key", new.parsed.key_id)
    code, out, _ = cli("auth", "audit", "--key", new.parsed.key_id, "--since", "7d", "--json")
    entries = json.loads(out)["entries"]
    assert [e["action"] for e in entries] == ["create", "update", "revoke"]
    assert {e["actor"] for e in entries} == {ACTOR}
    code, out, _ = cli("auth", "audit")
    assert code == 0 and ACTOR in out and "revoke" in out
    assert new.parsed.secret not in out


def test_audit_verify_then_tamper(cli, database_url):
    for _ in range(3):
        create(cli)
    code, out, _ = cli("auth", "audit", "--verify")
    assert code == 0 and "3 rows" in out
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT min(id) + 1 FROM audit_log").fetchone()
        assert row is not None
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_immutable")
        conn.execute(
            'UPDATE audit_log SET changes = changes || \'{"name": "x"}\' WHERE id = %s', [row[0]]
        )
    code, out, err = cli("auth", "audit", "--verify")
    assert code == 1 and f"row {row[0]}" in err and len(err.strip().splitlines()) == 1
    code, out, _ = cli("auth", "audit", "--verify", "--json")
    assert code == 1 and json.loads(out)["first_broken_id"] == row[0]


BAD_CREATE = [
    (["--allow-ip", "10.0.0.1/8"], "host bits"),
    (["--allow-ip", "10.0.0.0/33"], "bad CIDR"),
    (["--expires-at", "2001-01-01T00:00:00Z"], "in the past"),
    (["--expires-at", "tomorrow"], "malformed timestamp"),
    (["--expires-in", "5x"], "malformed duration"),
    (["--scopes", "mlflow:read,root"], "unknown scope"),
    (["--rate-limit", "lots"], "malformed rate limit"),
    (["--rate-limit=-5/h"], "malformed rate limit"),
    (["--burst", "-1"], "burst"),
    (["--burst", "many"], "invalid int"),
    (["--metadata", "novalue"], "key=value"),
    (["--env", "prod"], "invalid choice"),
    (["--expires-in", "1d", "--expires-at", "2099-01-01"], "not allowed with"),
    (["--user", "not-an-email"], "e-mail"),
    (["--name", ""], "must not be empty"),
    (["--bogus"], "unrecognized arguments"),
]


@pytest.mark.parametrize(("extra", "needle"), BAD_CREATE)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(cli, database_url, extra, needle):
    before = counts(database_url)
    code, out, err = cli("auth", "create-key", "--user", "d@example.com", "--name", "k", *extra)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1 and out == ""
    assert counts(database_url) == before


@pytest.mark.parametrize(
    "command",
    [
        ["auth", "show-key", "not-a-key-id"],
        ["auth", "revoke-key", "hk_prod_AAAAAAAAAAAA"],
        ["auth", "audit", "--key", "x"],
        ["auth", "rotate-key", "AAAAAAAAAAAA", "--grace", "soon"],
        ["db", "rollback", "--to", "-1"],
        ["auth", "update-key", "AAAAAAAAAAAA", "--clear-metadata", "--metadata", "a=b"],
        ["auth", "update-key", "AAAAAAAAAAAA", "--no-expiry", "--expires-in", "1d"],
        ["auth", "audit", "--limit", "0"],
        ["auth"],
        ["nope"],
    ],
)
def test_bad_usage_exits_2(cli, command):
    code, out, err = cli(*command)
    assert code == 2 and len(err.strip().splitlines()) == 1 and out == ""


def test_a_whole_key_as_id_is_refused_without_echo(cli):
    token = keys.generate("live").token
    code, _, err = cli("auth", "show-key", token)
    assert code == 2 and token not in err and token[21:60] not in err


@pytest.mark.parametrize(
    "command",
    [
        ["auth", "show-key", "AAAAAAAAAAAA"],
        ["auth", "update-key", "AAAAAAAAAAAA", "--name", "x"],
        ["auth", "revoke-key", "hk_live_AAAAAAAAAAAA"],
        ["auth", "rotate-key", "AAAAAAAAAAAA"],
    ],
)
def test_unknown_key_exits_1(cli, command):
    code, out, err = cli(*command)
    assert code == 1 and "no key with id AAAAAAAAAAAA" in err and out == ""


@pytest.mark.parametrize(
    "command",
    [
        ["auth", "list-keys"],
        ["auth", "create-key", "--user", "a@b.co", "--name", "n"],
        ["auth", "audit", "--verify"],
        ["db", "status"],
        ["db", "migrate"],
    ],
)
def test_unreachable_database_names_host_not_password(cli, command):
    code, out, err = cli(
        *command, "--database-url", "postgresql://ops:hunter2@127.0.0.1:1/x", db=False
    )
    assert code == 1 and "127.0.0.1:1" in err and "hunter2" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_database_url_from_the_stack_record(cli, database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("HOKUSAI_DATA_DIR", str(tmp_path))
    code, _, err = cli("auth", "list-keys", db=False)
    assert code == 2 and "--database-url" in err
    (tmp_path / "stack.json").write_text(json.dumps({"database_url": database_url}))
    code, out, _ = cli("auth", "list-keys", "--json", db=False)
    assert (code, json.loads(out)) == (0, {"keys": []})
    monkeypatch.setenv("HOKUSAI_DATABASE_URL", "postgresql://u:hunter2@127.0.0.1:1/x")
    code, _, err = cli("auth", "list-keys", db=False)
    assert code == 1 and "127.0.0.1:1" in err  # the setting wins over the stack record


def test_db_commands(cli, database_url):
    password = psycopg.conninfo.conninfo_to_dict(database_url).get("password")
    code, out, _ = cli("db", "status", "--json")
    status = json.loads(out)
    assert code == 0 and status["migrations"][0]["version"] == 1
    assert status["migrations"][0]["applied_at"] is not None
    code, out, _ = cli("db", "migrate")
    assert code == 0 and "already up to date" in out
    versions = [m.version for m in discover()]
    latest = f"{versions[-1]:04d}"
    code, out, _ = cli("db", "rollback", "--to", "0")
    assert code == 0 and "rolled back " in out and "0001" in out
    code, out, _ = cli("db", "status")
    assert code == 0 and "pending" in out
    code, out, _ = cli("db", "migrate", "--json")
    assert code == 0 and json.loads(out)["applied"] == versions
    code, out, _ = cli("db", "rollback")
    assert code == 0 and f"rolled back {latest} " in out
    code, out, _ = cli("db", "migrate")
    assert code == 0 and f"applied {latest} " in out
    if password:
        assert password not in out


def test_help_exits_0(cli):
    code, out, _ = cli("auth", "create-key", "--help", db=False)
    assert code == 0 and "--allow-ip" in out


def test_console_script(database_url):
    url = {"HOKUSAI_DATABASE_URL": database_url}
    done = run_hokusai(
        "auth", "create-key", "--user", "s@example.com", "--name", "sub", "--json", **url
    )
    assert done.returncode == 0, done.stderr
    token = json.loads(done.stdout)["token"]
    assert keys.parse(token) is not None and "only time" in done.stderr
    done = run_hokusai("auth", "show-key", "hk_live_AAAAAAAAAAAA", **url)
    assert done.returncode == 1 and done.stderr.count("\n") == 1


def test_unmigrated_database_says_so(cli, database_url):
    assert cli("db", "rollback", "--to", "0")[0] == 0
    code, _, err = cli("auth", "list-keys")
    assert code == 1 and "hokusai db migrate" in err and len(err.strip().splitlines()) == 1
