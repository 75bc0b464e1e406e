"""The keys REST API for tests: a module-scoped database, seeded callers, the app in-process or
served by uvicorn on a free port (for schemathesis and the docs examples)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import uvicorn
from fastapi.testclient import TestClient
from psycopg import sql

from authz.api.app import create_app
from authz.management.service import KeyService
from authz.settings import Settings
from authz.storage.db import connector
from cli.servers import free_port, http_ok
from tests.conftest import with_database


@contextmanager
def cloned_database(server_url: str, template: str) -> Iterator[str]:
    """A fresh migrated database (a copy of the session template) for a whole module."""
    name = f"api_{secrets.token_hex(5)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def api_settings(
    postgres_server_url: str, template: str, redis_server: Any, **overrides: Any
) -> Iterator[Settings]:
    """Settings for a keys API on a module's own database and the shared (or external) Redis."""
    from authz.settings import external_test_stores

    redis_url = external_test_stores().redis_url or redis_server.url
    with cloned_database(postgres_server_url, template) as url:
        yield Settings(database_url=url, redis_url=redis_url, bcrypt_cost=4, **overrides)


@contextmanager
def in_process(settings: Settings) -> Iterator[TestClient]:
    """The keys API app in-process (its lifespan runs: pools, listener, pages)."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@dataclass(frozen=True)
class Caller:
    key_id: str
    token: str
    email: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_key(
    settings: Settings,
    email: str,
    scopes: tuple[str, ...],
    name: str = "seed",
    allowed_ips: tuple[str, ...] = (),
) -> Caller:
    service = KeyService(connector(settings.database_url), settings, "test:seed")
    view, new = service.create_key(
        user_email=email, name=name, scopes=scopes, allowed_ips=allowed_ips
    )
    return Caller(view.key_id, new.token, email)


@contextmanager
def served(settings: Settings) -> Iterator[str]:
    """The app under uvicorn in a thread on a free port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not http_ok(f"{base}/api/v1/auth/health") and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(15)
