"""A real authz server (gRPC and HTTP transports) on real Postgres and Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest

from authz.keys import format as keys
from authz.management.service import KeyService
from authz.settings import Settings
from authz.storage.db import connector
from authz.transports import wire
from cli.servers import PostgresServer, RedisServer
from tests.corpus import Case, corpus
from tests.support.authz import (
    GrpcCheckClient,
    RunningAuthz,
    http_check,
    poll,
    running_authz,
)

BASE = Settings(
    bcrypt_cost=4, accepted_envs=frozenset({"live"}), local_cache_ttl=0.2, negative_cache_ttl=0.2
)
MLFLOW_GET = "/api/mlflow/api/2.0/mlflow/experiments/get?experiment_id=0"


def service(url: str) -> KeyService:
    return KeyService(connector(url), BASE, "test:authz")


def grpc_reason(client: GrpcCheckClient, case: Case) -> str:
    path = case.path + ("?" + case.query if case.query else "")
    response = client.check(case.method, path, list(case.headers))
    if response.HasField("ok_response"):
        return "allowed"
    return str(json.loads(response.denied_response.body)["error"])


def http_reason(port: int, case: Case) -> str:
    path = case.path + ("?" + case.query if case.query else "")
    answer = http_check(port, case.method, path, list(case.headers))
    if answer.status == 200:
        return "allowed"
    return str(json.loads(answer.body)["error"])


@pytest.fixture
def stack(database_url: str, redis_url: str) -> Iterator[tuple[RunningAuthz, KeyService]]:
    settings = BASE.replace(database_url=database_url, redis_url=redis_url)
    with running_authz(settings) as authz:
        yield authz, service(database_url)


def test_both_transports_decide_the_corpus_alike(stack: tuple[RunningAuthz, KeyService]) -> None:
    authz, svc = stack
    _, valid = svc.create_key(user_email="a@example.com", name="v", scopes=["mlflow:read"])
    _, revoked = svc.create_key(user_email="a@example.com", name="r")
    svc.revoke_key(revoked.parsed.key_id)
    cases = corpus(
        valid.token, revoked.token, keys.generate("live").token, keys.generate("test").token
    )
    client = GrpcCheckClient(authz.ports.grpc)
    try:
        for case in cases:
            assert grpc_reason(client, case) == case.expected, case.name
            assert http_reason(authz.ports.http, case) == case.expected, case.name
    finally:
        client.close()


def test_allow_strips_credentials_and_adds_identity(stack: tuple[RunningAuthz, KeyService]) -> None:
    authz, svc = stack
    view, new = svc.create_key(
        user_email="b@example.com",
        name="k",
        rate_limit_per_hour=100,
        burst=5,
        scopes=["mlflow:read", "mlflow:write"],
    )
    client = GrpcCheckClient(authz.ports.grpc)
    try:
        response = client.check("GET", MLFLOW_GET + f"&api_key={new.token}", [])
    finally:
        client.close()
    ok = response.ok_response
    added = {h.header.key: h.header.value for h in ok.headers}
    assert added[wire.KEY_ID_HEADER] == view.key_id
    assert added[wire.USER_ID_HEADER] == str(view.user_id)
    assert added[wire.SCOPES_HEADER] == "mlflow:read,mlflow:write"
    assert set(ok.headers_to_remove) == {"authorization", "x-api-key"}
    assert list(ok.query_parameters_to_remove) == ["api_key"]
    metadata = dict(response.dynamic_metadata.fields)
    assert metadata[wire.RATE_LIMIT_HEADER].string_value == "100"
    assert new.parsed.secret not in response.SerializeToString().decode("latin-1")

    answer = http_check(
        authz.ports.http, "GET", MLFLOW_GET, [("authorization", f"Bearer {new.token}")]
    )
    assert answer.status == 200
    assert answer.header(wire.KEY_ID_HEADER) == view.key_id
    assert answer.header(wire.HEADERS_TO_REMOVE_HEADER) == "authorization,x-api-key"
    assert answer.header(wire.BURST_HEADER) == "5"


def test_denials_carry_the_challenge_and_no_key(stack: tuple[RunningAuthz, KeyService]) -> None:
    authz, _svc = stack
    bogus = keys.generate("live").token
    answer = http_check(authz.ports.http, "GET", MLFLOW_GET, [("authorization", f"Bearer {bogus}")])
    assert answer.status == 401
    assert (
        answer.header(
            "www-authenticate",
        )
        == 'Bearer realm="hokusai", error="invalid_token"'
    )
    body = json.loads(answer.body)
    assert set(body) == {"error", "error_code", "message", "docs"}
    assert (body["error"], body["error_code"]) == ("unknown_key", "UNAUTHENTICATED")
    assert bogus not in answer.body.decode() and bogus[20:40] not in answer.body.decode()


def test_revocation_is_seen_within_a_second(stack: tuple[RunningAuthz, KeyService]) -> None:
    authz, svc = stack
    _, new = svc.create_key(user_email="c@example.com", name="k")
    header = [("authorization", f"Bearer {new.token}")]
    assert http_check(authz.ports.http, "GET", MLFLOW_GET, header).status == 200
    svc.revoke_key(new.parsed.key_id, "test")
    took = poll(
        lambda: http_check(authz.ports.http, "GET", MLFLOW_GET, header).status == 401, timeout=1.0
    )
    assert took <= 1.0


def test_key_created_after_a_miss_works_at_once(database_url: str, redis_url: str) -> None:
    settings = BASE.replace(database_url=database_url, redis_url=redis_url, negative_cache_ttl=60.0)
    svc = service(database_url)
    with running_authz(settings) as authz:
        # Create, look up, then delete-and-recreate is not possible; instead: look up an id that
        # does not exist yet, then create a key with exactly that id through raw SQL.
        new = keys.generate("live")
        header = [("authorization", f"Bearer {new.token}")]
        assert http_check(authz.ports.http, "GET", MLFLOW_GET, header).status == 401
        view, _ = svc.create_key(user_email="d@example.com", name="template")
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO api_keys (key_id, secret_hash, display_prefix, user_id, name, env, "
                "scopes) VALUES (%s, %s, %s, %s, 'late', 'live', '{mlflow:read}')",
                [
                    new.parsed.key_id,
                    keys.hash_secret(new.parsed.secret, 4),
                    new.parsed.display_prefix,
                    view.user_id,
                ],
            )
        poll(
            lambda: http_check(authz.ports.http, "GET", MLFLOW_GET, header).status == 200,
            timeout=1.0,
        )


def test_two_instances_share_redis_and_both_see_revocation(
    database_url: str, redis_url: str
) -> None:
    settings = BASE.replace(database_url=database_url, redis_url=redis_url, local_cache_ttl=60.0)
    svc = service(database_url)
    _, new = svc.create_key(user_email="e@example.com", name="k")
    header = [("authorization", f"Bearer {new.token}")]
    with running_authz(settings) as one, running_authz(settings) as two:
        for instance in (one, two):
            assert http_check(instance.ports.http, "GET", MLFLOW_GET, header).status == 200
        svc.revoke_key(new.parsed.key_id)
        for instance in (one, two):
            port = instance.ports.http
            poll(
                lambda p=port: http_check(p, "GET", MLFLOW_GET, header).status == 401,  # type: ignore[misc]
                timeout=1.0,
            )


def test_redis_down_checks_pass_from_postgres(
    database_url: str, private_redis: RedisServer
) -> None:
    settings = BASE.replace(
        database_url=database_url, redis_url=private_redis.url, redis_timeout=0.05
    )
    svc = service(database_url)
    _, first = svc.create_key(user_email="f@example.com", name="k1")
    _, second = svc.create_key(user_email="f@example.com", name="k2")
    with running_authz(settings) as authz:
        port = authz.ports.http
        assert http_check(port, "GET", MLFLOW_GET, [("x-api-key", first.token)]).status == 200
        private_redis.stop()
        for token in (first.token, second.token):
            poll(
                lambda t=token: (
                    http_check(
                        port,
                        "GET",
                        MLFLOW_GET,  # type: ignore[misc]
                        [("x-api-key", t)],
                    ).status
                    == 200
                ),
                timeout=5.0,
            )
        # A revocation while Redis is down must not be undone by a stale Redis entry later.
        svc.revoke_key(first.parsed.key_id)
        poll(
            lambda: http_check(port, "GET", MLFLOW_GET, [("x-api-key", first.token)]).status == 401,
            timeout=1.0,
        )
        private_redis.start()
        for _ in range(20):
            assert http_check(port, "GET", MLFLOW_GET, [("x-api-key", first.token)]).status == 401


def test_postgres_down_serves_recent_keys_and_fails_closed_for_others(
    private_postgres: PostgresServer, redis_url: str
) -> None:
    from authz.storage.migrations import migrate

    migrate(private_postgres.url)
    settings = BASE.replace(
        database_url=private_postgres.url, stale_window=120.0, database_timeout=0.5
    )
    svc = service(private_postgres.url)
    _, warm = svc.create_key(user_email="g@example.com", name="warm")
    _, cold = svc.create_key(user_email="g@example.com", name="cold")
    with running_authz(settings) as authz:
        port = authz.ports.http
        assert http_check(port, "GET", MLFLOW_GET, [("x-api-key", warm.token)]).status == 200
        private_postgres.stop()
        poll(
            lambda: http_check(port, "GET", MLFLOW_GET, [("x-api-key", warm.token)]).status == 200,
            timeout=5.0,
        )
        answer = http_check(port, "GET", MLFLOW_GET, [("x-api-key", cold.token)])
        assert answer.status == 503 and answer.header("retry-after") == "1"
        unknown = keys.generate("live").token
        assert http_check(port, "GET", MLFLOW_GET, [("x-api-key", unknown)]).status == 503


def test_postgres_restart_relistens_and_a_later_revoke_is_seen_within_a_second(
    private_postgres: PostgresServer, redis_url: str
) -> None:
    from authz.storage.migrations import migrate

    migrate(private_postgres.url)
    settings = BASE.replace(
        database_url=private_postgres.url, redis_url=redis_url, local_cache_ttl=60.0
    )
    svc = service(private_postgres.url)
    _, new = svc.create_key(user_email="h@example.com", name="k")
    header = [("x-api-key", new.token)]
    with running_authz(settings) as authz:
        listener = authz.server.listener
        assert listener is not None
        port = authz.ports.http
        assert http_check(port, "GET", MLFLOW_GET, header).status == 200
        resets = listener.resets
        private_postgres.stop()
        private_postgres.start()
        poll(lambda: listener.resets > resets and listener.connected.is_set(), timeout=10)
        # The caches were flushed on reconnect; the key is served again from Postgres.
        poll(lambda: http_check(port, "GET", MLFLOW_GET, header).status == 200, timeout=5)
        svc.revoke_key(new.parsed.key_id)
        took = poll(lambda: http_check(port, "GET", MLFLOW_GET, header).status == 401, timeout=1.0)
        assert took <= 1.0


def test_redis_flushed_costs_no_failures_and_no_extra_bcrypt(
    database_url: str, redis_url: str
) -> None:
    import redis as redis_client

    settings = BASE.replace(database_url=database_url, redis_url=redis_url, local_cache_ttl=0.05)
    svc = service(database_url)
    _, new = svc.create_key(user_email="i@example.com", name="k")
    header = [("authorization", f"Bearer {new.token}")]
    with running_authz(settings) as authz:
        port = authz.ports.http
        assert http_check(port, "GET", MLFLOW_GET, header).status == 200
        redis_client.Redis.from_url(redis_url).flushall()
        for _ in range(20):
            assert http_check(port, "GET", MLFLOW_GET, header).status == 200
        assert authz.server.verifier.bcrypt_runs == 1
