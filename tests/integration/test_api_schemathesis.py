"""schemathesis against the live OpenAPI document of the keys API (uvicorn on a free port):
with an admin key, generated requests to every operation never get a 5xx, and every response
matches the documented status codes, content types and schemas. Bounded: 20 examples per
operation, derandomized."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from authz.settings import Settings, external_test_stores
from tests.support.keys_api import Caller, cloned_database, make_key, served

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live_api(
    postgres_server_url: str, _template_database: str, redis_server: Any
) -> Iterator[tuple[str, Caller]]:
    redis_url = external_test_stores().redis_url or redis_server.url
    with cloned_database(postgres_server_url, _template_database) as url:
        api_settings = Settings(database_url=url, redis_url=redis_url, bcrypt_cost=4)
        admin = make_key(api_settings, "fuzz-admin@example.com", ("admin",))
        make_key(api_settings, "fuzz-admin@example.com", ("mlflow:read",))
        with served(api_settings) as base:
            yield base, admin


@pytest.fixture(scope="module")
def api_schema(live_api: tuple[str, Caller]) -> Any:
    base, _admin = live_api
    return schemathesis.openapi.from_url(f"{base}/api/v1/auth/openapi.json")


def test_no_server_error_and_schema_conformance(
    api_schema: Any, live_api: tuple[str, Caller]
) -> None:
    # One hypothesis run per operation, driven here: schemathesis' pytest plugin
    # (from_fixture) does not work with this pytest version.
    base, admin = live_api
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 9

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=20,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            case.call_and_validate(base_url=base, headers=admin.headers, checks=CHECKS)

        run()
