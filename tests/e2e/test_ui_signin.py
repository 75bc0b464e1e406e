"""Signing in to the MLflow UI in a real browser (Debian's Chromium) through real Envoy, authz,
the keys API, MLflow, Postgres and Redis: MLflow's own "View run" link, the sign-in page, the way
back to the run (fragment and all), the session cookie, sign-out, and our pages' headers."""

from __future__ import annotations

from typing import Any

import pytest

from authz.sessions import cookie
from tests.e2e.conftest import Gateway
from tests.e2e.ui import (
    Seed,
    UiKeys,
    close_assistant,
    doc_image,
    mlflow_own_failure,
    open_signed_in,
    session_of,
    settle,
    sign_in,
    ui_page,
)
from tests.support.browser import require_chromium

pytestmark = pytest.mark.usefixtures("chromium")


@pytest.fixture(scope="module")
def chromium() -> None:
    require_chromium()


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_view_run_link_signs_in_and_lands_on_the_run(
    transport: str, gateways: dict[str, Gateway], ui_keys: UiKeys, ui_seed: Seed
) -> None:
    gateway = gateways[transport]
    link = f"{gateway.mlflow_uri}/#{ui_seed.run_fragment()}"  # as MLflow prints it
    with ui_page(gateway) as (page, recorder):
        landed = page.goto(link, wait_until="load")
        assert page.url == (
            f"{gateway.url}/login?next=%2Fapi%2Fmlflow%2F&reason=missing_key"
            f"#{ui_seed.run_fragment()}"
        )
        assert landed is not None
        asked = landed.request.redirected_from  # the page load the gateway redirected
        assert asked is not None and asked.url == f"{gateway.mlflow_uri}/"  # no fragment sent
        answer = asked.response()
        assert answer is not None and answer.status == 302
        if transport == "http":
            doc_image(page, "ui-signin")
        sign_in(page, ui_keys.reader)
        assert page.url == link  # the fragment came back through the sign-in
        page.get_by_text("run-0", exact=True).first.wait_for()
        page.goto(f"{link}/model-metrics", wait_until="load")
        page.get_by_text("rmse", exact=True).first.wait_for()
        page.locator(".js-plotly-plot, canvas, svg.main-svg").first.wait_for()
        settle(page, recorder)
        if transport == "http":
            close_assistant(page)  # MLflow opens its assistant panel: not ours to show
            doc_image(page, "ui-run-signed-in")
        failures = [
            (r.method, r.path, r.status)
            for r in recorder.failures()
            if not r.path.endswith(".worker.js") and r.status != 302 and not mlflow_own_failure(r)
        ]
        assert not failures
        assert recorder.origins() == {gateway.url}


def test_the_session_cookie_is_exactly_as_designed(
    gateways: dict[str, Gateway], ui_keys: UiKeys
) -> None:
    gateway = gateways["http"]
    with ui_page(gateway) as (page, _recorder):
        open_signed_in(page, gateway, ui_keys.reader)
        held: dict[str, Any] | None = session_of(page)
        assert held is not None
        assert held["domain"] == "localhost"  # host-only: no Domain attribute was sent
        assert (held["path"], held["secure"], held["httpOnly"], held["sameSite"]) == (
            "/",
            True,
            True,
            "Lax",
        )
        assert isinstance(cookie.session_id(f"{cookie.COOKIE_NAME}={held['value']}"), str)
        assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it
