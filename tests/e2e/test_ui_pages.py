"""Every MLflow UI page through the gateway with a browser session (real Chromium, Envoy, authz,
MLflow): a read key sees them all and gets the UI's own error — our message — on a write; a
write key registers a model version from the UI; artifacts open and download byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Gateway
from tests.e2e.ui import (
    Seed,
    UiKeys,
    close_assistant,
    mlflow_own_failure,
    open_signed_in,
    settle,
    show,
    ui_page,
)
from tests.support.browser import require_chromium, screenshot


# Answers MLflow itself gives that are not the gateway's doing (research finding 9): the model
# version page asks for the MLmodel of a runs:/ source, which MLflow resolves through its own
# tracking URI and answers with a 500.
@pytest.fixture(scope="module", autouse=True)
def chromium() -> None:
    require_chromium()


def pages(seed: Seed) -> list[tuple[str, str, str]]:
    """(name, fragment, text that proves the page rendered). The run's metric chart and a text
    artifact are shown by test_ui_signin.py and test_artifacts_open_and_download_byte_for_byte."""
    experiment, run = seed.experiment_id, seed.run_fragment()
    return [
        ("experiment list", "/experiments", seed.experiment),
        ("experiment runs", f"/experiments/{experiment}/runs", "run-1"),
        ("chart view", f"/experiments/{experiment}/runs?compareRunsMode=CHART", "rmse"),
        ("run page", run, "alpha"),
        ("run artifacts", f"{run}/artifacts", "notes.txt"),
        ("model registry", "/models", seed.model),
        ("model page", f"/models/{seed.model}", "Version 1"),
        ("model version", f"/models/{seed.model}/versions/1", seed.model),
        ("traces", f"/experiments/{experiment}/traces", '{"a": 1, "b": 2}'),
        (
            "trace view",
            f"/experiments/{experiment}/traces?selectedEvaluationId={seed.trace}",
            "inner",
        ),
    ]


def test_a_read_key_sees_every_page(
    gateways: dict[str, Gateway], ui_keys: UiKeys, ui_seed: Seed
) -> None:
    gateway = gateways["http"]
    with ui_page(gateway) as (page, recorder):
        open_signed_in(page, gateway, ui_keys.reader, "/experiments", ui_seed.experiment)
        for name, fragment, proof in pages(ui_seed):
            recorder.label = name
            show(page, gateway, fragment, proof)
            settle(page, recorder)
        screenshot(page, "read-key-trace-view")
        refused = [
            (r.label, r.method, r.path, r.status)
            for r in recorder.failures()
            if not mlflow_own_failure(r)
            and r.status != 302  # the first page load, on the way to signing in
            and not r.path.endswith(".worker.js")
        ]
        assert not refused
        graphql = [r for r in recorder.requests if r.path.endswith("/graphql")]
        assert graphql and all(r.status == 200 for r in graphql)  # queries are reads
        assert recorder.origins() == {gateway.url}


def test_a_read_key_gets_the_uis_error_on_a_write(
    gateways: dict[str, Gateway], ui_keys: UiKeys, ui_seed: Seed
) -> None:
    gateway = gateways["http"]
    with ui_page(gateway) as (page, recorder):
        runs = f"/experiments/{ui_seed.experiment_id}/runs"
        open_signed_in(page, gateway, ui_keys.reader, runs, "run-1")
        close_assistant(page)
        row = page.get_by_role("row").filter(has_text="run-1").first
        row.locator("input[type=checkbox]").first.check(force=True)
        page.get_by_role("button", name="Delete").first.click()
        dialog = page.locator("[role=dialog]")
        dialog.get_by_role("button", name="Delete").click()
        message = page.get_by_text("The API key lacks the scope this request needs").first
        message.wait_for()
        page.wait_for_timeout(500)  # the dialog's fade-out
        screenshot(page, "read-key-refused-write")
        deletes = [r for r in recorder.requests if r.path.endswith("/runs/delete")]
        assert deletes and all(r.status == 403 for r in deletes)
        assert '"insufficient_scope"' in (deletes[0].response_body or "")
    run = gateway.get(
        f"/api/mlflow/api/2.0/mlflow/runs/get?run_id={ui_seed.runs[1]}",
        headers={"Authorization": f"Bearer {ui_keys.reader}"},
    )
    assert run.json()["run"]["info"]["lifecycle_stage"] == "active"  # nothing changed


def test_artifacts_open_and_download_byte_for_byte(
    gateways: dict[str, Gateway], ui_keys: UiKeys, ui_seed: Seed, tmp_path: Path
) -> None:
    gateway = gateways["http"]
    with ui_page(gateway) as (page, recorder):
        artifacts = f"{ui_seed.run_fragment()}/artifacts"
        open_signed_in(page, gateway, ui_keys.reader, artifacts, "notes.txt")
        page.get_by_text("data", exact=True).first.click()  # the artifact tree, as a person does
        page.get_by_text("weights.bin", exact=True).first.click()
        page.get_by_text("data/weights.bin").first.wait_for()
        settle(page, recorder)
        button = page.locator("button[data-component-id$='artifactview.tsx_337']")
        expect(button).to_have_count(1)
        with page.expect_download() as download:
            button.click()
        assert download.value.suggested_filename == "weights.bin"
        saved = tmp_path / "weights.bin"
        download.value.save_as(saved)
        assert saved.read_bytes() == ui_seed.binary
        page.get_by_text("notes.txt", exact=True).first.click()
        page.get_by_text("hello from run 0").first.wait_for()  # a text artifact, shown
        fetched = [r for r in recorder.requests if r.path == "/api/mlflow/get-artifact"]
        assert fetched and all(r.status == 200 for r in fetched)


def test_a_write_key_registers_a_model_version_from_the_ui(
    gateways: dict[str, Gateway], ui_keys: UiKeys, ui_seed: Seed
) -> None:
    gateway = gateways["http"]
    with ui_page(gateway) as (page, recorder):
        clf = f"{ui_seed.run_fragment(1)}/artifacts/clf"
        open_signed_in(page, gateway, ui_keys.writer, clf, "Register model")
        page.get_by_role("button", name="Register model").first.click()
        dialog = page.locator("[role=dialog]")
        page.locator("#selectedModel").click()
        page.locator(".du-bois-light-select-item-option", has_text=ui_seed.model).first.click()
        dialog.get_by_role("button", name="Register").click()
        settle(page, recorder)
        created = [r for r in recorder.requests if r.path.endswith("/model-versions/create")]
        assert created and created[-1].status == 200
    versions = gateway.get(
        "/api/mlflow/api/2.0/mlflow/registered-models/get",
        params={"name": ui_seed.model},
        headers={"Authorization": f"Bearer {ui_keys.reader}"},
    ).json()["registered_model"]["latest_versions"]
    assert any(v["run_id"] == ui_seed.runs[1] for v in versions)
