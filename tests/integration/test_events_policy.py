"""Authentication events, the central key policy and expiry warnings on real Postgres (issue 15).

* the recorder loses nothing below its bound (rows == denials) and counts what it drops above it;
  a failed flush keeps its batch; no secret reaches a row;
* a real authz server records denials from both transports, with key id, user, reason, route;
* the policy refuses over-long keys at creation and existing keys at check time, within a second
  of the change, in two authz instances at once; every change is audited;
* the expiry webhook: signed, once per key and threshold even with two runners racing, retried
  after a failing receiver, logged.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from authz.check.checker import CheckInput, Decision
from authz.check.credentials import CredentialSources
from authz.check.reasons import Reason
from authz.errors import InvalidInput
from authz.events import webhook
from authz.events.recorder import EventRecorder
from authz.keys import format as keys
from authz.management.policy import PolicyUpdate
from authz.management.service import KeyService
from authz.settings import Settings
from authz.storage.db import connector
from tests.support.authz import GrpcCheckClient, http_check, poll, running_authz

BASE = Settings(bcrypt_cost=4, local_cache_ttl=0.2, negative_cache_ttl=0.2)
GET = "/api/mlflow/api/2.0/mlflow/experiments/get?experiment_id=0"


def service(url: str) -> KeyService:
    return KeyService(connector(url), BASE, "test:admin")


def rows(url: str, sql: str = "SELECT count(*) FROM auth_events") -> Any:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def denial(key_id: str, reason: Reason = Reason.REVOKED) -> tuple[Decision, CheckInput]:
    request = CheckInput(
        "GET", GET + "&api_key=hk_live_secretlooking", CredentialSources(None, None, ""), "10.1.2.3"
    )
    return Decision(reason, key_id=key_id), request


# --- the recorder -----------------------------------------------------------------------------


TOTAL = "SELECT count(*), coalesce(sum(count), 0) FROM auth_events"


def test_below_the_bound_nothing_is_lost(database_url: str) -> None:
    recorder = EventRecorder(database_url, queue_size=5000, flush_interval=1, retention=86400)
    for i in range(4000):
        recorder.denied(*denial(f"abcdefgh{i % 10:04d}"))
    assert asyncio.run(recorder.flush()) == 4000
    [(stored, counted)] = rows(database_url, TOTAL)
    assert counted == 4000 and recorder.dropped == 0  # every denial, in a few rows
    assert stored <= 10 * 2  # ten keys, within at most two seconds
    route, client = rows(database_url, "SELECT route, host(client_address) FROM auth_events")[0]
    assert route == "/api/mlflow/api/2.0/mlflow/experiments/get"  # no query string, no api_key
    assert client == "10.1.2.3"


def test_above_the_bound_drops_are_counted(database_url: str) -> None:
    recorder = EventRecorder(
        database_url, queue_size=100, flush_interval=1, retention=86400, clock=lambda: 100.0
    )
    for i in range(250):  # 250 distinct events: the bound holds 100 of them
        recorder.denied(*denial(f"abcdefgh{i:04d}"))
    assert recorder.pending == 100 and recorder.dropped == 150
    for _ in range(1000):  # one already pending: counted, whatever the bound
        recorder.denied(*denial("abcdefgh0000"))
    assert recorder.pending == 1100 and recorder.dropped == 150
    asyncio.run(recorder.flush())
    assert rows(database_url, TOTAL)[0][1] == 1100


def test_a_failed_flush_keeps_its_batch(database_url: str) -> None:
    broken = EventRecorder(
        "postgresql://nobody@127.0.0.1:1/none", queue_size=10, flush_interval=1, retention=1
    )
    for _ in range(3):
        broken.denied(*denial("abcdefgh0002"))
    assert asyncio.run(broken.flush()) == 0
    assert broken.pending == 3 and broken.dropped == 0


def test_signins_use_the_same_recorder(database_url: str) -> None:
    recorder = EventRecorder(database_url, queue_size=10, flush_interval=1, retention=86400)
    recorder.signin("signin_refused", reason="invalid_secret", client_address="not an address")
    asyncio.run(recorder.flush())
    assert rows(database_url, "SELECT kind, reason, client_address FROM auth_events") == [
        ("signin_refused", "invalid_secret", None)
    ]
    with pytest.raises(ValueError):
        recorder.signin("hacked", reason="x")


def test_pruning_keeps_the_retention(database_url: str) -> None:
    recorder = EventRecorder(database_url, queue_size=10, flush_interval=1, retention=3600)
    recorder.denied(*denial("abcdefgh0003"))
    asyncio.run(recorder.flush())
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE auth_events SET at = now() - interval '2 hours'")
    recorder.denied(*denial("abcdefgh0004"))
    asyncio.run(recorder.flush())
    assert asyncio.run(recorder.prune()) == 1
    assert rows(database_url) == [(1,)]


def test_distinct_events_stay_distinct_rows(database_url: str) -> None:
    clock = iter([100.0, 100.5, 101.0, 101.2]).__next__
    recorder = EventRecorder(
        database_url, queue_size=10, flush_interval=1, retention=86400, clock=clock
    )
    for reason in (Reason.REVOKED, Reason.REVOKED, Reason.REVOKED, Reason.EXPIRED):
        recorder.denied(*denial("abcdefgh0005", reason))
    asyncio.run(recorder.flush())
    found = rows(
        database_url,
        "SELECT extract(epoch FROM at)::int, reason, count FROM auth_events ORDER BY 1, 2",
    )
    assert found == [(100, "revoked", 2), (101, "expired", 1), (101, "revoked", 1)]


# --- a real authz server, both transports -----------------------------------------------------


def test_denials_of_both_transports_are_recorded(database_url: str, redis_url: str) -> None:
    svc = service(database_url)
    view, key = svc.create_key(user_email="ev@example.com", name="ev")
    _, fenced = svc.create_key(
        user_email="ev@example.com", name="fenced", allowed_ips=["10.9.0.0/16"]
    )
    svc.revoke_key(view.key_id)
    wrong = keys.generate("live", key_id=key.parsed.key_id)  # right id, wrong secret
    settings = BASE.replace(
        database_url=database_url, redis_url=redis_url, events_flush_interval=0.1
    )
    with running_authz(settings) as authz:
        grpc = GrpcCheckClient(authz.ports.grpc)
        try:
            for token in (key.token, fenced.token, wrong.token):
                bearer = [("authorization", f"Bearer {token}")]
                assert not grpc.check("GET", GET, bearer).HasField("ok_response")
                assert http_check(authz.ports.http, "GET", GET, bearer).status in (401, 403)
        finally:
            grpc.close()
        poll(lambda: rows(database_url, TOTAL)[0][1] == 6, timeout=10)
    found = svc.events(user_email="ev@example.com")
    by_reason: dict[str, int] = {}
    for e in found:
        by_reason[e.reason] = by_reason.get(e.reason, 0) + e.count
    assert by_reason == {"revoked": 2, "ip_not_allowed": 2, "invalid_secret": 2}
    assert {e.user_email for e in found} == {"ev@example.com"}
    assert all(e.route == "/api/mlflow/api/2.0/mlflow/experiments/get" for e in found)
    dump = json.dumps([e.to_json() for e in found])
    for token in (key.token, fenced.token, wrong.token):
        assert token[21:] not in dump
    usage = svc.key_usage(view.key_id, timedelta(hours=1))
    assert usage.denials == {"revoked": 2, "invalid_secret": 2}  # the wrong secret: same id


def reason(port: int, headers: list[tuple[str, str]]) -> str:
    answer = http_check(port, "GET", GET, headers)
    return "allowed" if answer.status == 200 else str(json.loads(answer.body)["error"])


def answers(port: int, headers: list[tuple[str, str]], expected: str) -> Callable[[], bool]:
    return lambda: reason(port, headers) == expected


# --- the central policy -----------------------------------------------------------------------


def test_policy_refuses_an_over_long_key_and_is_audited(database_url: str) -> None:
    svc = service(database_url)
    svc.set_policy(PolicyUpdate(max_lifetime="90d", max_lifetime_scope={"admin": "7d"}))
    with pytest.raises(InvalidInput, match="maximum key lifetime of 90d"):
        svc.create_key(user_email="p@example.com", name="long", expires_in=timedelta(days=100))
    with pytest.raises(InvalidInput, match="maximum key lifetime of 7d"):
        svc.create_key(
            user_email="p@example.com", name="adm", scopes=["admin"], expires_in=timedelta(days=8)
        )
    view, _ = svc.create_key(user_email="p@example.com", name="default")
    assert view.expires_at is not None  # the maximum, when none is given
    svc.set_policy(PolicyUpdate(max_lifetime="off", require_expiry_live=True))
    with pytest.raises(InvalidInput, match="live keys must expire"):
        svc.create_key(user_email="p@example.com", name="forever")
    test_key, _ = svc.create_key(user_email="p@example.com", name="t", env="test")
    assert test_key.expires_at is None
    audited = svc.audit_entries(action="policy.update")
    assert len(audited) == 2 and audited[0].actor == "test:admin"
    assert svc.policy().version == 3


def test_policy_reaches_existing_keys_on_two_instances(database_url: str, redis_url: str) -> None:
    svc = service(database_url)
    _, key = svc.create_key(user_email="old@example.com", name="old")
    _, fresh = svc.create_key(user_email="old@example.com", name="fresh")
    with psycopg.connect(database_url) as conn:  # a key made long ago, last used 40 days ago
        conn.execute(
            "UPDATE api_keys SET created_at = now() - interval '100 days',"
            " last_used_at = now() - interval '40 days' WHERE key_id = %s",
            [key.parsed.key_id],
        )
    settings = BASE.replace(database_url=database_url, redis_url=redis_url)
    bearer = [("authorization", f"Bearer {key.token}")]
    with running_authz(settings) as one, running_authz(settings) as two:
        ports = (one.ports.http, two.ports.http)
        for port in ports:
            poll(answers(port, bearer, "allowed"), timeout=5)
        svc.set_policy(PolicyUpdate(inactivity_expiry="30d"))
        for port in ports:
            assert poll(answers(port, bearer, "inactive"), timeout=1.0) <= 1.0
        svc.set_policy(PolicyUpdate(inactivity_expiry="off", max_lifetime="60d"))
        for port in ports:
            poll(answers(port, bearer, "expired"), timeout=1.0)
        ok = [("authorization", f"Bearer {fresh.token}")]
        assert http_check(one.ports.http, "GET", GET, ok).status == 200


# --- expiry warnings --------------------------------------------------------------------------

SECRET = "whsec-test-secret"


class Receiver:
    """A real local HTTP receiver that verifies each signature; ``fail`` answers 500."""

    def __init__(self, fail: bool = False) -> None:
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.fail = fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if not webhook.verify(SECRET, self.headers[webhook.SIGNATURE_HEADER] or "", body):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                elif receiver.fail:
                    self.send_response(500)
                else:
                    receiver.received.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def notifier(url: str, hook: str) -> webhook.ExpiryNotifier:
    return webhook.ExpiryNotifier(url, hook, SECRET, (14 * 86400, 3 * 86400, 86400))


def test_signature_round_trip() -> None:
    header = webhook.sign(SECRET, b"{}", now=1000)
    assert webhook.verify(SECRET, header, b"{}", now=1010)
    assert not webhook.verify(SECRET, header, b"{ }", now=1010)
    assert not webhook.verify("other", header, b"{}", now=1010)
    assert not webhook.verify(SECRET, header, b"{}", now=1000 + 2 * webhook.TOLERANCE)


def test_warnings_once_per_key_and_threshold_with_two_runners(
    database_url: str, receiver: Receiver
) -> None:
    svc = service(database_url)
    soon, _ = svc.create_key(user_email="w@example.com", name="soon", expires_in=timedelta(days=2))
    later, _ = svc.create_key(
        user_email="w@example.com", name="later", expires_in=timedelta(days=10)
    )
    svc.create_key(user_email="w@example.com", name="far", expires_in=timedelta(days=60))
    runners = [notifier(database_url, receiver.url) for _ in range(2)]
    for _ in range(3):
        threads = [threading.Thread(target=r.run_once) for r in runners]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert receiver.bad_signatures == 0
    got = sorted((m["key_id"], m["threshold"]) for m in receiver.received)
    assert got == sorted([(soon.key_id, "3d"), (later.key_id, "14d")])
    log = {(d.key_id, d.threshold_s): d for d in svc.deliveries()}
    assert log[(soon.key_id, 14 * 86400)].status == "superseded"
    assert log[(soon.key_id, 3 * 86400)].status == "delivered"
    assert all(d.last_error is None for d in log.values())
    assert [k.key_id for k in svc.list_keys(expiring=timedelta(days=14))] == [
        soon.key_id,
        later.key_id,
    ]


def test_a_failing_receiver_is_retried_and_logged(database_url: str) -> None:
    failing = Receiver(fail=True)
    try:
        svc = service(database_url)
        view, _ = svc.create_key(
            user_email="f@example.com", name="f", expires_in=timedelta(hours=5)
        )
        runner = notifier(database_url, failing.url)
        assert runner.run_once() == 1
        [entry] = [d for d in svc.deliveries(view.key_id) if d.status != "superseded"]
        assert (entry.threshold_s, entry.attempts, entry.last_error) == (86400, 1, "HTTP 500")
        assert entry.status == "pending"
        assert runner.run_once() == 0  # backoff: not due yet
        with psycopg.connect(database_url) as conn:
            conn.execute("UPDATE webhook_deliveries SET next_attempt_at = now()")
        failing.fail = False
        assert runner.run_once() == 1
        [entry] = [d for d in svc.deliveries(view.key_id) if d.status != "superseded"]
        assert (entry.status, entry.attempts) == ("delivered", 2)
        assert len(failing.received) == 1 and SECRET not in json.dumps(entry.to_json())
    finally:
        failing.close()
