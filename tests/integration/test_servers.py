"""The real server processes: start, answer, stop without leaving anything behind."""

from __future__ import annotations

import gc
import socket
import stat
import sys
from pathlib import Path

import psycopg
import pytest
import redis

from cli.servers import (
    EnvoyServer,
    ManagedProcess,
    MlflowServer,
    PostgresServer,
    RedisServer,
    ServerError,
    free_port,
    group_alive,
    http_ok,
    validate,
)


class Script(ManagedProcess):
    """A shell script as a managed process, with a probe the test controls."""

    name = "script"

    def __init__(self, log_dir: Path, script: str, ready: bool = True) -> None:
        super().__init__(log_dir)
        self.script = script
        self.is_ready = ready

    def command(self) -> list[str]:
        return ["/bin/sh", "-c", self.script]

    def ready(self) -> bool:
        return self.is_ready


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_process_that_dies_is_reported_with_its_log(tmp_path):
    with pytest.raises(ServerError, match="script exited") as info:
        Script(tmp_path, "echo boom-from-child; exit 3", ready=False).start(timeout=30)
    assert "boom-from-child" in str(info.value)


def test_a_process_that_is_never_ready_times_out_and_is_stopped(tmp_path):
    proc = Script(tmp_path, "echo still-starting; exec sleep 60", ready=False)
    with pytest.raises(ServerError, match="not ready after") as info:
        proc.start(timeout=0.5)
    assert "still-starting" in str(info.value)
    assert not proc.running


def test_stop_kills_the_whole_group_even_when_sigterm_is_ignored(tmp_path):
    proc = Script(tmp_path, "trap '' TERM; sleep 60 & sleep 60; wait").start()
    pgid = proc.pid
    assert pgid is not None and group_alive(pgid)
    proc.stop(grace=0.3)
    assert not group_alive(pgid)


def test_a_forgotten_process_is_killed_by_its_finalizer(tmp_path):
    proc = Script(tmp_path, "exec sleep 60").start()
    pgid = proc.pid
    assert pgid is not None
    del proc
    gc.collect()
    assert not group_alive(pgid)


def test_postgres_serves_tcp_with_a_password_and_stops_cleanly(tmp_path):
    server = PostgresServer(tmp_path / "pg", fast=True)
    with server:
        with psycopg.connect(server.url) as conn:
            who = conn.execute("SELECT current_user, current_database()").fetchone()
            addr = conn.execute("SHOW listen_addresses").fetchone()
        assert who == ("hokusai", "hokusai")
        assert addr == ("127.0.0.1",)
        wrong = server.url.replace(server.password, "wrong-password")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(wrong, connect_timeout=5).close()
        pgid = server.pid
    assert pgid is not None and not group_alive(pgid)
    mode = (tmp_path / "pg" / "hokusai-password").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_postgres_second_start_reuses_the_data_directory(tmp_path):
    server = PostgresServer(tmp_path / "pg", fast=True)
    with server, psycopg.connect(server.url) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    password = server.password
    again = PostgresServer(tmp_path / "pg", fast=True)
    with again, psycopg.connect(again.url) as conn:
        assert conn.execute("SELECT x FROM kept").fetchone() == (42,)
    assert again.password == password


def test_postgres_recovers_after_being_killed(tmp_path):
    # Durable settings: with fast=True a crash may lose the last commits, by design.
    server = PostgresServer(tmp_path / "pg")
    with server:
        with psycopg.connect(server.url) as conn:
            conn.execute("CREATE TABLE survived (x int)")
        pgid = server.pid
        server.kill()
        assert pgid is not None and not group_alive(pgid)
        server.start()
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT count(*) FROM survived").fetchone() == (0,)


def test_postgres_refuses_a_directory_that_is_not_a_cluster(tmp_path):
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "stray").write_text("x")
    with pytest.raises(ServerError, match="neither empty nor a cluster"):
        PostgresServer(tmp_path / "pg", fast=True).start()


def _ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=0.3)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def test_redis_stop_start_on_the_same_port_and_pause(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    try:
        port, pgid = server.port, server.pid
        assert _ping(server.url)
        server.stop()
        assert pgid is not None and not group_alive(pgid)
        assert not _ping(server.url)
        server.start()
        assert server.port == port and _ping(server.url)
        server.pause()
        assert not _ping(server.url)
        server.resume()
        assert _ping(server.url)
        server.pause()  # stopping a paused server must still work
    finally:
        server.stop()


ENVOY_CONFIG = """
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
static_resources:
  listeners:
  - name: direct
    address: {socket_address: {address: 127.0.0.1, port_value: %d}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": %s
          stat_prefix: direct
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                direct_response: {status: 200, body: {inline_string: "hello"}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""


HCM = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
    ".HttpConnectionManager"
)


def _envoy_config(path: Path) -> tuple[Path, int, int]:
    admin, listener = free_port(), free_port()
    path.write_text(ENVOY_CONFIG % (admin, listener, HCM))
    return path, admin, listener


def test_envoy_validate_accepts_good_and_rejects_bad_config(tmp_path):
    good, _, _ = _envoy_config(tmp_path / "good.yaml")
    validate(good)
    bad = tmp_path / "bad.yaml"
    bad.write_text("static_resources: {listeners: [{name: x, no_such_field: 1}]}\n")
    with pytest.raises(ServerError, match="invalid"):
        validate(bad)


def test_two_envoys_run_at_once_and_stop_cleanly(tmp_path):
    first, admin1, port1 = _envoy_config(tmp_path / "one.yaml")
    second, admin2, port2 = _envoy_config(tmp_path / "two.yaml")
    with (
        EnvoyServer(first, admin1, tmp_path / "e1") as one,
        EnvoyServer(second, admin2, tmp_path / "e2") as two,
    ):
        assert http_ok(f"http://127.0.0.1:{port1}/") and http_ok(f"http://127.0.0.1:{port2}/")
        pgids = [one.pid, two.pid]
    assert all(p is not None and not group_alive(p) for p in pgids)


@pytest.mark.skipif(sys.platform != "linux", reason="process groups read from /proc")
def test_mlflow_starts_and_its_whole_group_stops(tmp_path):
    server = MlflowServer(tmp_path / "mlflow")
    with server:
        assert http_ok(f"{server.url}/health")
        pgid = server.pid
        assert pgid is not None and group_alive(pgid)
    assert not group_alive(pgid)


def test_a_chosen_port_taken_meanwhile_moves_to_another(tmp_path):
    server = RedisServer(tmp_path / "redis")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", server.port))
        squatter.listen()
        taken = server.port
        with server:
            assert server.port != taken and _ping(server.url)


def test_an_explicit_port_taken_is_an_error(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = RedisServer(tmp_path / "redis", port=squatter.getsockname()[1])
        with pytest.raises(ServerError, match=r"(?i)address already in use"):
            server.start()
