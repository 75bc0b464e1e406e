"""The MLflow UI in a real browser (Debian's Chromium through Playwright) through the real gateway.

Proves the browser test infrastructure (tests/support/browser.py): the key is forced into every
request as a header, the UI's experiment list renders through Envoy, authz and MLflow, every
request it makes is recorded, and a screenshot is kept under tests/artifacts/screens/.
"""

from __future__ import annotations

import uuid

from tests.e2e.conftest import Gateway
from tests.support.browser import (
    RequestRecorder,
    browser_page,
    require_chromium,
    screenshot,
)

MOUNT = "/api/mlflow"


def test_experiment_list_through_the_gateway_with_a_forced_header(
    gateways: dict[str, Gateway],
) -> None:
    require_chromium()
    gateway = gateways["http"]
    _, writer = gateway.service().create_key(
        user_email="ui-writer@example.com", name="ui-seed", scopes=["mlflow:read", "mlflow:write"]
    )
    _, reader = gateway.service().create_key(
        user_email="ui-reader@example.com", name="ui-read", scopes=["mlflow:read"]
    )
    name = f"browser-{uuid.uuid4().hex[:8]}"
    created = gateway.post(
        f"{MOUNT}/api/2.0/mlflow/experiments/create",
        json={"name": name},
        headers={"Authorization": f"Bearer {writer.token}"},
    )
    assert created.status_code == 200, created.text

    with browser_page(
        headers={"Authorization": f"Bearer {reader.token}"}, trust_ca=gateway.ca
    ) as page:
        recorder = RequestRecorder.attach(page.context)
        recorder.label = "experiment list"
        page.goto(f"{gateway.mlflow_uri}/#/experiments", wait_until="load")
        page.get_by_text(name, exact=True).first.wait_for(state="visible")
        recorder.wait_quiet(page, quiet_ms=500, timeout_ms=10_000, ignore=("worker.js",))
        shot = screenshot(page, "experiment-list")

    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    document = recorder.requests[0]
    assert (document.path, document.status) == (f"{MOUNT}/", 200)
    assert (document.sec_fetch_mode, document.sec_fetch_dest) == ("navigate", "document")
    searches = [
        r for r in recorder.requests if r.path == f"{MOUNT}/ajax-api/2.0/mlflow/experiments/search"
    ]
    assert searches and all(r.status == 200 for r in searches)
    assert all(r.sec_fetch_mode == "cors" for r in searches)
    # Everything comes from the gateway's own origin: no CDN, no fonts from elsewhere.
    assert recorder.origins() == {gateway.url}
    unexpected = [
        (r.method, r.path, r.status, r.failure)
        for r in recorder.failures()
        # a shared worker's script load is cut when the page closes
        if not (r.path.endswith(".worker.js") and r.failure)
    ]
    assert not unexpected
    # The gateway answers the UI's who-am-I call (MLflow's basic-auth app is not mounted).
    who = [r for r in recorder.requests if r.path == f"{MOUNT}/ajax-api/2.0/mlflow/users/current"]
    assert who and all(r.status == 200 for r in who)
