"""Checks 1–3: the URL, DNS, TCP."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from hokusai.doctor.results import Result, fail, ok
from hokusai.doctor.target import UrlKind
from hokusai.gateway import MLFLOW_PREFIX
from hokusai.reasons import DEFAULT_NAMES, Names

OLD_PATH = "/mlflow"  # the MLflow path of earlier instructions


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    gateway: str  # scheme, host, port and any path prefix before /api/mlflow (no trailing /)

    @property
    def tracking_path(self) -> str:
        return urlsplit(self.gateway).path + MLFLOW_PREFIX

    def path(self, suffix: str) -> str:
        return urlsplit(self.gateway).path + suffix


def _display_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}{parts.path}"


def _suggested_path(path: str, kind: UrlKind) -> str:
    """The path the URL should have: the gateway's prefix, plus /api/mlflow for MLflow's URI."""
    prefix = path.removesuffix(MLFLOW_PREFIX).removesuffix(OLD_PATH)
    return prefix + (MLFLOW_PREFIX if kind == "tracking" else "")


def check_url(
    url: str | None, kind: UrlKind = "gateway", names: Names = DEFAULT_NAMES
) -> tuple[Result, Endpoint | None]:
    """``gateway``: ``https://host[:port][/prefix]`` (…/api/mlflow accepted too); ``tracking``:
    MLflow's tracking URI, which must end with /api/mlflow."""
    wanted = f"https://<gateway host>:<port>{MLFLOW_PREFIX if kind == 'tracking' else ''}"
    if not url:
        return fail(
            "url",
            f"no gateway URL: {names.url} is not set and no --url given",
            f"export {names.url}={wanted}",
        ), None
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    shown = _display_url(url.strip())
    try:
        port = parts.port or 443
    except ValueError:
        return fail(
            "url",
            f"{shown}: the port is not a number",
            f"write it as https://<host>:<port>{_suggested_path('', kind)}",
        ), None
    netloc = parts.netloc.rsplit("@", 1)[-1] or "<gateway host>"
    if parts.scheme != "https" or not parts.hostname:
        where = f"{parts.hostname}:<https port>" if parts.hostname and parts.port else netloc
        return fail(
            "url",
            f"{shown}: the gateway is reached over https only",
            f"set {names.url}=https://{where}{_suggested_path(path, kind)} (the HTTPS "
            "port; the plain-HTTP one only redirects, which MLflow's POSTs do not follow)",
        ), None
    misplaced = path.endswith(OLD_PATH) and not path.endswith(MLFLOW_PREFIX)
    if misplaced or (kind == "tracking" and not path.endswith(MLFLOW_PREFIX)):
        why = (
            f"{OLD_PATH} is the old MLflow path"
            if misplaced
            else f"the path does not end with {MLFLOW_PREFIX}"
        )
        return fail(
            "url",
            f"{shown}: {why}",
            f"set {names.url}=https://{netloc}{_suggested_path(path, kind)} (MLflow is "
            f"served under {MLFLOW_PREFIX} on the gateway)",
        ), None
    gateway = f"https://{netloc}{path.removesuffix(MLFLOW_PREFIX)}"
    return ok("url", shown), Endpoint(parts.hostname, port, gateway)


def check_dns(endpoint: Endpoint) -> tuple[Result, list[str] | None]:
    try:
        infos = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return fail(
            "dns",
            f"{endpoint.host} does not resolve ({exc})",
            "check the host name in the URL for typos; if the gateway is on a private "
            "network, connect to its VPN (or add it to /etc/hosts)",
        ), None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return ok("dns", f"{endpoint.host} → {', '.join(addresses)}"), addresses


def check_tcp(endpoint: Endpoint, addresses: list[str], timeout: float) -> Result:
    errors = []
    for address in addresses:
        try:
            with socket.create_connection((address, endpoint.port), timeout=timeout):
                return ok("tcp", f"connected to {address} port {endpoint.port}")
        except OSError as exc:
            errors.append(f"{address}: {exc.strerror or exc}")
    refused = all("refused" in e.lower() for e in errors)
    advice = (
        "nothing listens there: check the port in the URL and that the gateway is running "
        "(local stack: `hokusai gateway status`, start it with `hokusai gateway up`)"
        if refused
        else "a firewall, proxy or VPN may block the port; check the port, "
        "and try from the gateway's own network"
    )
    return fail("tcp", f"cannot connect to port {endpoint.port} ({'; '.join(errors)})", advice)
