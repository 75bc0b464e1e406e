"""What the MLflow UI tests share: the seeded data, keys, signing in through the real sign-in page,
and waiting for the UI (a hash-routed single-page app whose telemetry worker never goes quiet).

The fixtures ``ui_seed`` and ``ui_keys`` live in conftest.py; everything here is plain helpers.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from authz.sessions import cookie
from tests.support.browser import RecordedRequest, RequestRecorder, browser_page, screenshot
from tests.support.mlflow import run_client_script

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.e2e.conftest import Gateway

HERE = Path(__file__).resolve().parent
DOC_IMAGES = HERE.parents[1] / "docs" / "images"
QUIET_IGNORED = ("worker.js", "ui-telemetry")
# What a browser sends with the MLflow UI's own calls, and with a page load.
UI_FETCH = {"sec-fetch-site": "same-origin", "sec-fetch-mode": "cors", "sec-fetch-dest": "empty"}
PAGE_LOAD = {"sec-fetch-mode": "navigate", "sec-fetch-dest": "document"}


@dataclass(frozen=True)
class Seed:
    experiment: str
    experiment_id: str
    runs: list[str]
    model: str
    trace: str
    binary: bytes

    def run_fragment(self, index: int = 0) -> str:
        return f"/experiments/{self.experiment_id}/runs/{self.runs[index]}"


@dataclass(frozen=True)
class UiKeys:
    writer: str  # mlflow:read, mlflow:write
    reader: str  # mlflow:read
    writer_email: str
    reader_email: str


def mlflow_own_failure(request: RecordedRequest) -> bool:
    """A failure of MLflow's UI itself, with or without a gateway in front:

    * the artifact of a model version that has none (500);
    * the run page's prompt search: the UI puts the run id between unescaped ``%`` wildcards in
      its query (``ILIKE "%<run id>%"``), so a run id that begins with an escape such as ``22``
      is read back as ``"`` and MLflow refuses the filter (400 ``INVALID_PARAMETER_VALUE``):
      about one run id in a hundred."""
    if (request.method, request.path, request.status) == (
        "GET",
        "/api/mlflow/model-versions/get-artifact",
        500,
    ):
        return True
    return (
        request.status == 400
        and request.path == "/api/mlflow/ajax-api/2.0/mlflow/model-versions/search"
        and "INVALID_PARAMETER_VALUE" in (request.response_body or "")
    )


def seed(gateway: Gateway, token: str) -> Seed:
    """Log the UI tests' data with the standard MLflow client through the gateway."""
    data = run_client_script(HERE / "ui_seed.py", gateway.mlflow_uri, token, gateway.ca)
    return Seed(
        data["experiment"],
        data["experiment_id"],
        data["runs"],
        data["model"],
        data["trace"],
        bytes.fromhex(data["binary_hex"]),
    )


@contextmanager
def ui_page(gateway: Gateway, **options: Any) -> Iterator[tuple[Page, RequestRecorder]]:
    """A fresh browser (its own profile: no cookies) trusting the gateway's CA, and its recorder."""
    with browser_page(trust_ca=gateway.ca, **options) as page:
        yield page, RequestRecorder.attach(page.context)


def settle(page: Page, recorder: RequestRecorder, quiet_ms: int = 400) -> None:
    recorder.wait_quiet(page, quiet_ms=quiet_ms, timeout_ms=20_000, ignore=QUIET_IGNORED)


def sign_in(page: Page, token: str, *, expect_success: bool = True) -> None:
    """On the sign-in page: paste the key and submit (as a person would)."""
    page.locator("#key").fill(token)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    if expect_success:
        assert "/login" not in page.url, page.url


def open_signed_in(
    page: Page, gateway: Gateway, token: str, fragment: str = "/", proof: str | None = None
) -> None:
    """Open MLflow at ``#fragment`` and sign in on the way (lands back on the fragment); wait
    until ``proof`` shows, if given."""
    page.goto(f"{gateway.mlflow_uri}/#{fragment}", wait_until="load")
    assert page.url.startswith(f"{gateway.url}/login"), page.url
    sign_in(page, token)
    if proof is not None:
        wait_for_text(page, proof)


def signed_in_session(page: Page, gateway: Gateway, token: str) -> dict[str, Any]:
    """Sign in on the way to MLflow's experiment list; the session cookie the browser holds."""
    open_signed_in(page, gateway, token, "/experiments")
    held = session_of(page)
    assert held is not None
    return held


def show(page: Page, gateway: Gateway, fragment: str, proof: str) -> None:
    """Go to MLflow's ``#fragment`` (the UI routes it; no document request) and wait for
    ``proof``."""
    page.goto(f"{gateway.mlflow_uri}/#{fragment}", wait_until="load")
    wait_for_text(page, proof)


def wait_for_text(page: Page, proof: str, timeout_ms: int = 15_000) -> None:
    """Wait until ``proof`` shows; reload once if it does not. Under load MLflow's UI sometimes
    aborts one of its own calls while re-rendering and then keeps its loading skeleton (Envoy
    logs the browser's own reset, ``DR``; the call never reaches the gateway's decision): one
    reload is what a person does, and the test does the same."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    target = page.get_by_text(proof).filter(visible=True).first
    try:
        target.wait_for(timeout=timeout_ms)
    except PlaywrightTimeout:
        page.reload(wait_until="load")
        target.wait_for(timeout=timeout_ms * 2)


def put_session(page: Page, gateway: Gateway, value: str) -> None:
    """Give the browser a session cookie, as the gateway would set it (a planted or old one)."""
    page.context.add_cookies(
        [
            {
                "name": cookie.COOKIE_NAME,
                "value": value,
                "url": gateway.url,
                "secure": True,
                "httpOnly": True,
                "sameSite": "Lax",
            }
        ]
    )


def close_assistant(page: Page) -> None:
    """Close MLflow's assistant panel (it opens by itself and covers the UI's toasts)."""
    close = page.locator("[data-component-id='mlflow.assistant.chat_panel.close']")
    if close.count():
        close.first.click()


def session_of(page: Page) -> dict[str, Any] | None:
    """The session cookie as the browser holds it (name, value, flags), or None."""
    found = [c for c in page.context.cookies() if c["name"] == cookie.COOKIE_NAME]
    assert len(found) <= 1
    return dict(found[0]) if found else None


def doc_image(page: Page, name: str) -> Path:
    """A screenshot for the documentation: always under tests/artifacts/screens/; copied to
    docs/images/<name>.png when ``UPDATE_DOC_IMAGES=1``, else the committed one must exist and
    have the same size (the page has not changed shape)."""
    shot = screenshot(page, name)
    committed = DOC_IMAGES / f"{name}.png"
    if os.environ.get("UPDATE_DOC_IMAGES") == "1":
        DOC_IMAGES.mkdir(exist_ok=True)
        committed.write_bytes(shot.read_bytes())
    assert png_size(committed.read_bytes()) == png_size(shot.read_bytes()), (
        f"{committed}: regenerate it with UPDATE_DOC_IMAGES=1"
    )
    return committed


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def until(condition: Callable[[], bool], seconds: float, step: float = 0.02) -> float:
    """Poll ``condition`` until true; the seconds it took (AssertionError past the deadline)."""
    start = time.monotonic()
    for _ in range(int(seconds / step) + 2):
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > seconds:
            break
        time.sleep(step)
    raise AssertionError(f"not within {seconds} s")
