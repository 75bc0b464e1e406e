"""Cross-site requests with a browser session, in a real browser: pages on other origins post a
form and send a fetch with credentials to the gateway while the victim is signed in with a
read-write key. On the same site (another port of the same host: the cookie goes along) the
gateway refuses them with 403 ``cross_site_request``; from another site the browser does not even
send the cookie (SameSite=Lax). Either way nothing changes."""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.conftest import Gateway
from tests.e2e.ui import UiKeys, open_signed_in, settle, ui_page
from tests.support.browser import require_chromium

CREATE = "/api/mlflow/ajax-api/2.0/mlflow/experiments/create"


@pytest.fixture(scope="module", autouse=True)
def chromium() -> None:
    require_chromium()


def attacker_page(target: str, name: str) -> bytes:
    """A form posting JSON-looking text (the classic text/plain CSRF) and a no-cors fetch with
    credentials (no preflight, so the request really leaves the browser)."""
    field = f'{{"name": "{name}", "x": "'
    return f"""<!doctype html><html><body>
<form id="f" method="POST" action="{target}" enctype="text/plain">
<input name='{field}' value='"}}'></form>
<script>
window.sent = fetch("{target}", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{name: "{name}-fetch"}})}})
  .then(() => "sent", () => "failed");
</script></body></html>""".encode()


@contextmanager
def serve(body: bytes, tls: tuple[str, str] | None) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def logged_posts(gateway: Gateway) -> list[int]:
    """Statuses of the POSTs to CREATE in this gateway's Envoy access log, oldest first."""
    log = gateway.data_dir / "logs" / "envoy.log"
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    return [
        entry["status"]
        for entry in map(json.loads, lines)
        if entry.get("method") == "POST" and entry.get("path") == CREATE
    ]


def until_logged(gateway: Gateway, before: list[int], count: int) -> list[int]:
    for _ in range(100):  # Envoy writes its access log within a second or so
        statuses = logged_posts(gateway)[len(before) :]
        if len(statuses) >= count:
            return statuses
        time.sleep(0.1)
    raise AssertionError(f"{count} POSTs not logged: {logged_posts(gateway)[len(before) :]}")


def experiment_exists(gateway: Gateway, token: str, name: str) -> bool:
    found = gateway.get(
        "/api/mlflow/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": name},
        headers={"Authorization": f"Bearer {token}"},
    )
    return found.status_code == 200


def test_cross_site_changes_with_the_session_are_refused_and_change_nothing(
    gateways: dict[str, Gateway], ui_keys: UiKeys
) -> None:
    gateway = gateways["http"]
    tls_dir = gateway.data_dir / "tls"
    tls = (str(tls_dir / "server.crt"), str(tls_dir / "server.key"))
    target = gateway.url + CREATE
    names = {where: f"csrf-{uuid.uuid4().hex[:8]}" for where in ("same site", "other site")}
    with (
        serve(attacker_page(target, names["same site"]), tls) as same_site,
        serve(attacker_page(target, names["other site"]), None) as other_site,
        ui_page(gateway) as (page, recorder),
    ):
        open_signed_in(page, gateway, ui_keys.writer, "/experiments", "Experiments")
        attackers = {
            # another port of the same host: the same site, so the browser sends the cookie
            "same site": (f"https://localhost:{same_site}/", 403, "cross_site_request"),
            # another host: another site, so SameSite=Lax keeps the cookie home
            "other site": (f"http://127.0.0.1:{other_site}/", 401, "missing_key"),
        }
        for where, (url, status, code) in attackers.items():
            before = logged_posts(gateway)
            page.goto(url, wait_until="load")
            assert page.evaluate("window.sent") == "sent", where
            with page.expect_navigation():
                page.evaluate("document.getElementById('f').submit()")
            settle(page, recorder)
            assert f'"{code}"' in page.locator("body").inner_text(), where  # the form's answer
            # Both POSTs as Envoy answered them (a no-cors fetch's answer is opaque to the page).
            assert until_logged(gateway, before, count=2) == [status, status], where
    for name in names.values():
        for created in (name, f"{name}-fetch"):
            assert not experiment_exists(gateway, ui_keys.writer, created)
