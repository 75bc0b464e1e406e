"""One of two authz instances killed under load (TESTPLAN "Faults"): in-flight checks may fail
with 503, traffic shifts to the survivor, and no request ever reaches the upstream without the
key id authz adds — zero open doors."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from authz.management.service import KeyService
from authz.settings import Settings
from authz.storage.db import connector
from authz.transports import wire
from cli.servers import EnvoyServer, free_port
from tests.support.authz import running_authz
from tests.support.envoy_rig import envoy_bootstrap

SEEN: list[str | None] = []  # the key id header of every request the upstream received


class RecordingUpstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        SEEN.append(self.headers.get(wire.KEY_ID_HEADER))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def hammer(url: str, token: str, stop: threading.Event, statuses: list[int]) -> None:
    session = requests.Session()
    deadline = time.monotonic() + 30  # bounded whatever happens
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            statuses.append(
                session.get(
                    url, headers={"Authorization": f"Bearer {token}"}, timeout=5
                ).status_code
            )
        except requests.RequestException:
            statuses.append(0)


def test_losing_one_authz_instance_opens_no_door(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    settings = Settings(database_url=database_url, redis_url=redis_url, bcrypt_cost=4)
    _, key = KeyService(connector(database_url), settings, "test:faults").create_key(
        user_email="lost@example.com",
        name="k",
        rate_limit_per_hour=0,  # limits are not the point
    )
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), RecordingUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    statuses: list[int] = []
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        survivor = stack.enter_context(running_authz(settings))
        doomed = contextlib.ExitStack()
        victim = doomed.enter_context(running_authz(settings))
        port, admin = free_port(), free_port()
        config = tmp_path / "envoy.json"
        config.write_text(
            json.dumps(
                envoy_bootstrap(
                    port,
                    admin,
                    int(upstream.server_address[1]),
                    [victim, survivor],
                    rate_limit=False,
                )
            )
        )
        stack.enter_context(EnvoyServer(config, admin, tmp_path / "logs"))
        url = f"http://127.0.0.1:{port}/t/x"
        worker = threading.Thread(target=hammer, args=(url, key.token, stop, statuses))
        worker.start()
        time.sleep(1.0)  # load before the loss (the hammer is bounded; this is not a wait-for)
        doomed.close()  # the instance stops: its port refuses from now on
        lost_at = len(statuses)
        time.sleep(2.0)
        stop.set()
        worker.join(35)
    upstream.shutdown()
    upstream.server_close()
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert statuses[lost_at:].count(200) > 0  # traffic shifted to the survivor
    assert SEEN and all(k == key.parsed.key_id for k in SEEN)  # zero open doors
