"""Containers and Kubernetes, validated offline: the compose file by the Compose spec parser, the
Dockerfile by hadolint plus our own rules, the rendered manifests by kubernetes-validate, and the
Envoy config they ship equal to the generator's output for the same options."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from compose_spec import PyCompose

from cli import deploy, envoy_config

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
HADOLINT = REPO / ".venv" / "bin" / "hadolint"
K8S_VERSION = "1.31"
OVERLAYS = ("dev", "production")
# Fields that say where the neighbours are; everything else is the gateway's behaviour.
LOCATION = {"authz_grpc", "authz_http", "mlflow", "keys_api"}


# --- compose -------------------------------------------------------------------------------
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def test_compose_file_passes_the_compose_spec_parser() -> None:
    parsed = PyCompose.from_yaml((REPO / "docker-compose.yml").read_text())
    assert set(parsed.service_names()) == {
        "envoy",
        "authz",
        "keys-api",
        "migrate",
        "mlflow",
        "postgres",
        "redis",
    }


def test_the_compose_validator_rejects_a_broken_file() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    with pytest.raises(ValueError):
        PyCompose.from_yaml(text.replace("condition: service_healthy", "condition: healthy", 1))


def test_compose_envoy_is_the_official_1_40_image_and_mounts_the_generated_config() -> None:
    envoy = compose()["services"]["envoy"]
    assert envoy["image"].startswith("envoyproxy/envoy:v1.40.")
    assert "./envoy/compose.yaml:/etc/envoy/envoy.yaml:ro" in envoy["volumes"]
    committed = (REPO / "envoy" / "compose.yaml").read_text()
    assert committed == envoy_config.render_yaml(envoy_config.COMPOSE)


def test_every_upstream_envoy_names_in_compose_is_a_service() -> None:
    services = set(compose()["services"])
    options = envoy_config.COMPOSE
    for endpoint in (options.authz_grpc, options.authz_http, options.mlflow, options.keys_api):
        assert endpoint is not None and endpoint.host in services


def test_the_pod_runs_the_keys_api_envoy_routes_to() -> None:
    text = (REPO / "deploy" / "base" / "deployment.yaml").read_text()
    assert envoy_config.KUBERNETES.keys_api is not None
    assert envoy_config.KUBERNETES.keys_api.host == "127.0.0.1"
    assert '["python", "-m", "authz.api"]' in text


def test_compose_runs_migrations_once_before_authz() -> None:
    services = compose()["services"]
    assert services["migrate"]["entrypoint"] == ["hokusai", "db", "migrate"]
    assert services["authz"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )


# --- Dockerfile ----------------------------------------------------------------------------
def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(REPO / "Dockerfile")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split()[0].upper(), line.partition(" ")[2])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_house_rules() -> None:
    steps = instructions()
    base = next(arg for op, arg in steps if op == "FROM")
    assert base.startswith("python:3.11-slim") and ":" in base and "latest" not in base
    users = [arg for op, arg in steps if op == "USER"]
    assert users and not users[-1].startswith(("0", "root"))
    assert any(op == "HEALTHCHECK" and "/health" in arg for op, arg in steps)
    assert not any(op == "ADD" for op, _ in steps)  # COPY only: no remote or auto-extracted files
    assert any(op == "RUN" and "--require-hashes -r requirements.lock" in arg for op, arg in steps)
    # The server depends on the client distribution (hokusai-client, ./client): installed first.
    install = next(arg for op, arg in steps if op == "RUN" and "-e ." in arg)
    assert ("COPY", "client ./client") in steps and install.index("./client") < install.index(
        "-e ."
    )
    assert steps[-1] == ("ENTRYPOINT", '["python", "-m", "authz"]')


# --- Kubernetes ----------------------------------------------------------------------------
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_manifests_pass_kubernetes_validate(overlay: str) -> None:
    objects = deploy.render(REPO / "deploy" / "overlays" / overlay)
    kinds = {obj["kind"] for obj in objects}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
        "Job",
    } <= kinds
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_kubernetes_validate_is_really_checking() -> None:
    deployment = next(
        o for o in deploy.render(REPO / "deploy" / "base") if o["kind"] == "Deployment"
    )
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["htpGet"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_the_configmap_holds_the_generated_envoy_config() -> None:
    assert (REPO / "deploy" / "base" / "envoy-config.yaml").read_text() == deploy.configmap_yaml()
    configmap = next(o for o in deploy.render(REPO / "deploy" / "base") if o["kind"] == "ConfigMap")
    shipped = configmap["data"]["envoy.yaml"]
    assert shipped == envoy_config.render_yaml(envoy_config.KUBERNETES)
    assert shipped == (REPO / "envoy" / "kubernetes.yaml").read_text()


@pytest.mark.parametrize("shipped", [envoy_config.KUBERNETES, envoy_config.COMPOSE])
def test_shipped_configs_differ_from_gateway_yaml_only_in_addresses(
    shipped: envoy_config.EnvoyOptions,
) -> None:
    """The containers run gateway.yaml's filter chain, listeners and policies (what the e2e
    stacks run, from the same builders); only the neighbours' addresses differ."""
    default = envoy_config.DEFAULTS["gateway.yaml"]
    changed = {
        f.name
        for f in dataclasses.fields(default)
        if getattr(default, f.name) != getattr(shipped, f.name)
    }
    assert changed <= LOCATION
    relocated = dataclasses.replace(default, **{n: getattr(shipped, n) for n in changed})
    assert envoy_config.render(relocated) == envoy_config.render(shipped)


def test_pods_are_hardened_and_probed() -> None:
    deployment = next(
        o for o in deploy.render(REPO / "deploy" / "base") if o["kind"] == "Deployment"
    )
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert container["readinessProbe"] and container["livenessProbe"]
        assert "limits" in container["resources"]
    envoy = next(c for c in pod["containers"] if c["name"] == "envoy")
    assert envoy["readinessProbe"]["httpGet"]["path"] == "/health"
    assert envoy["image"].startswith("envoyproxy/envoy:v1.40.")


def test_production_overlay_ships_no_secret_values() -> None:
    objects = deploy.render(REPO / "deploy" / "overlays" / "production")
    assert not [o for o in objects if o["kind"] == "Secret"]
