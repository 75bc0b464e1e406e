"""Fixtures shared by the integration modules that run the keys API in-process: each module
defines its own ``settings`` (its database, its limits); ``client`` is the app on them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from authz.settings import Settings
from tests.support.keys_api import in_process


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with in_process(settings) as test_client:
        yield test_client
