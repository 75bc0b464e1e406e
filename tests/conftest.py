"""Shared fixtures. Nothing here starts a server until a test asks for it.

Markers follow the folder: tests under ``tests/unit`` are ``unit``, ``tests/integration``
``integration``, ``tests/e2e`` ``e2e`` (select with ``-m``). A unit test that requests a server
fixture is a collection error.

Postgres
    ``postgres_server`` (session): the shared ``cli.servers.PostgresServer`` (``fast=True``), or
        None when ``HOKUSAI_TEST_DATABASE_URL`` points at an external server.
    ``postgres_server_url`` (session): URL of that server's ``hokusai`` database (or the external
        URL). Do not create tables there; use ``database_url``.
    ``database_url`` (function): a fresh, fully migrated database of its own, cloned from a
        template migrated once per session (``CREATE DATABASE … TEMPLATE``), dropped afterwards.
    ``private_postgres`` (function): a dedicated, started ``PostgresServer`` (not migrated: call
        ``authz.storage.migrations.migrate(server.url)``) that the test may stop, restart or kill.

Redis
    ``redis_server`` (session): the shared ``cli.servers.RedisServer``, or None when
        ``HOKUSAI_TEST_REDIS_URL`` is set.
    ``redis_url`` (function): the shared Redis, emptied (FLUSHALL) before the test.
    ``private_redis`` (function): a dedicated, started ``RedisServer`` the test may ``stop()``,
        ``start()`` again (same port), ``pause()`` / ``resume()`` to inject faults.

MLflow
    ``mlflow_server`` (session): a shared ``cli.servers.MlflowServer`` (about 15 s to start).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from authz.settings import external_test_stores
from authz.storage.migrations import migrate
from cli.servers import MlflowServer, PostgresServer, RedisServer

TESTS_DIR = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "e2e")
SERVER_FIXTURES = frozenset(
    {
        "postgres_server",
        "postgres_server_url",
        "database_url",
        "private_postgres",
        "redis_server",
        "redis_url",
        "private_redis",
        "mlflow_server",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            tier = item.path.resolve().relative_to(TESTS_DIR).parts[0]
        except ValueError:
            continue
        if tier not in TIERS:
            continue
        item.add_marker(getattr(pytest.mark, tier))
        used = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        if tier == "unit" and used:
            raise pytest.UsageError(f"{item.nodeid}: unit tests may not use {sorted(used)}")


def with_database(url: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    if "://" not in url:
        return make_conninfo(url, dbname=dbname)
    return urlunsplit(urlsplit(url)._replace(path=f"/{dbname}"))


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, connect_timeout=10)


def _drop_database(server_url: str, dbname: str) -> None:
    with _admin(server_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


# --- Postgres ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer | None]:
    if external_test_stores().database_url:
        yield None
        return
    with PostgresServer(tmp_path_factory.mktemp("postgres") / "data", fast=True) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server_url(postgres_server: PostgresServer | None) -> str:
    return external_test_stores().database_url or postgres_server.url  # type: ignore[union-attr]


@pytest.fixture(scope="session")
def _template_database(postgres_server_url: str) -> Iterator[str]:
    """A database migrated once per session; every ``database_url`` is a copy of it."""
    name = f"hokusai_tpl_{secrets.token_hex(4)}"
    with _admin(postgres_server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        migrate(with_database(postgres_server_url, name))
        yield name
    finally:
        _drop_database(postgres_server_url, name)


@pytest.fixture
def database_url(postgres_server_url: str, _template_database: str) -> Iterator[str]:
    name = f"t_{secrets.token_hex(6)}"
    with _admin(postgres_server_url) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(_template_database)
            )
        )
    try:
        yield with_database(postgres_server_url, name)
    finally:
        _drop_database(postgres_server_url, name)


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    with PostgresServer(tmp_path / "postgres", fast=True) as server:
        yield server


# --- Redis ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer | None]:
    if external_test_stores().redis_url:
        yield None
        return
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer | None) -> str:
    import redis

    url = external_test_stores().redis_url or redis_server.url  # type: ignore[union-attr]
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.flushall()
    finally:
        client.close()
    return url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


# --- MLflow --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with MlflowServer(tmp_path_factory.mktemp("mlflow")) as server:
        yield server
