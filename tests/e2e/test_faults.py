"""Faults through real Envoy: Redis stopped, Postgres stopped, authz killed (TESTPLAN "Faults").

Each test gets a private stack (its own Postgres and Redis that it may stop) in front of the
shared MLflow. Zero open doors: a request either carries a verified key or gets a denial.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from authz.management.service import KeyService
from authz.settings import Settings
from authz.storage.db import connector
from authz.storage.migrations import migrate
from cli.servers import MlflowServer, PostgresServer, RedisServer, free_port
from cli.stack import LocalStack, StackOptions, StackRecord
from tests.support.authz import poll

SEARCH = "/api/mlflow/api/2.0/mlflow/experiments/search?max_results=1"


class Private:
    def __init__(
        self,
        stack: LocalStack,
        record: StackRecord,
        postgres: PostgresServer,
        redis: RedisServer,
        service: KeyService,
    ) -> None:
        self.stack, self.record, self.postgres, self.redis = stack, record, postgres, redis
        self.service = service

    def status(self, token: str) -> requests.Response:
        return requests.get(
            self.record.gateway_url + SEARCH,
            verify=self.record.ca_cert,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )


@pytest.fixture(params=["grpc", "http"])
def private(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    private_postgres: PostgresServer,
    private_redis: RedisServer,
    mlflow_server: MlflowServer,
) -> Iterator[Private]:
    migrate(private_postgres.url)
    settings = Settings(
        bcrypt_cost=4, database_url=private_postgres.url, redis_url=private_redis.url
    )
    stack = LocalStack(
        StackOptions(
            data_dir=tmp_path / "stack",
            https_port=free_port(),
            http_port=free_port(),
            mlflow_url=mlflow_server.url,
            transport=request.param,
            extra_authz_env={
                "HOKUSAI_LOCAL_CACHE_TTL": "0.3",
                "HOKUSAI_STALE_WINDOW": "120",
                "HOKUSAI_DATABASE_TIMEOUT": "0.5",
                "HOKUSAI_REDIS_TIMEOUT": "0.05",
            },
        ),
        settings,
    )
    record = stack.start()
    try:
        yield Private(
            stack,
            record,
            private_postgres,
            private_redis,
            KeyService(connector(private_postgres.url), settings, "test:faults"),
        )
    finally:
        stack.stop()


def test_redis_down_keys_pass_from_postgres(private: Private) -> None:
    _, warm = private.service.create_key(user_email="f@example.com", name="warm")
    _, cold = private.service.create_key(user_email="f@example.com", name="cold")
    assert private.status(warm.token).status_code == 200
    private.redis.stop()
    for token in (warm.token, cold.token):
        poll(lambda t=token: private.status(t).status_code == 200, timeout=5)  # type: ignore[misc]


def test_postgres_down_serves_recent_keys_only(private: Private) -> None:
    _, warm = private.service.create_key(user_email="p@example.com", name="warm")
    _, cold = private.service.create_key(user_email="p@example.com", name="cold")
    assert private.status(warm.token).status_code == 200
    private.redis.stop()  # no shared cache either: only the in-process stale copy remains
    private.postgres.stop()
    for _ in range(5):
        assert private.status(warm.token).status_code == 200
    denied = private.status(cold.token)
    assert denied.status_code == 503
    assert denied.headers.get("retry-after") == "1"


def test_authz_down_is_exactly_503(private: Private) -> None:
    _, key = private.service.create_key(user_email="a@example.com", name="k")
    assert private.status(key.token).status_code == 200
    authz = next(p for p in private.stack.parts if p.name == "authz")
    authz.kill()
    for _ in range(5):
        answer = private.status(key.token)
        assert answer.status_code == 503
        # key verification is what failed (not MLflow: issue 15's mlflow_unavailable)
        assert answer.json()["error"] == "unavailable"
