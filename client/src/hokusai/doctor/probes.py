"""Checks 5–9 over the verified connection: gateway health, MLflow behind it, the key offline,
the key at the gateway, its scopes. The advice for a refused key comes from ``hokusai.reasons``.

These requests are deliberately single-shot (no retries): the doctor reports what one request
sees, and says when the answer was a 429 or 503.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hokusai import keyformat, reasons
from hokusai.doctor.network import Endpoint
from hokusai.doctor.results import Result, fail, ok
from hokusai.doctor.target import Target
from hokusai.gateway import HEALTH, MAX_BODY, MLFLOW_HEALTH, USER_AGENT, WHOAMI, Reply
from hokusai.status import WRITE_SCOPES

SEARCH_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"  # under the tracking path


@dataclass(frozen=True, slots=True)
class Connection:
    endpoint: Endpoint
    context: ssl.SSLContext
    timeout: float


Fetch = Callable[[Connection, str, Mapping[str, str]], Reply]


def https_get(conn: Connection, path: str, headers: Mapping[str, str]) -> Reply:
    """One GET; raises OSError or http.client.HTTPException on transport failures."""
    client = http.client.HTTPSConnection(
        conn.endpoint.host, conn.endpoint.port, context=conn.context, timeout=conn.timeout
    )
    try:
        client.request("GET", path, headers={"user-agent": f"{USER_AGENT} doctor", **headers})
        response = client.getresponse()
        return Reply(response.status, response.read(MAX_BODY))
    finally:
        client.close()


def _get(
    fetch: Fetch, conn: Connection, path: str, headers: Mapping[str, str] | None = None
) -> Reply | str:
    """The reply, or one line saying why there is none."""
    try:
        return fetch(conn, path, headers or {})
    except (OSError, http.client.HTTPException) as exc:
        return f"no answer ({type(exc).__name__}: {exc})"


# --- 5. gateway health, 6. MLflow behind it ----------------------------------------------------


def check_gateway(conn: Connection, fetch: Fetch) -> Result:
    reply = _get(fetch, conn, conn.endpoint.path(HEALTH))
    if isinstance(reply, str):
        return fail(
            "gateway",
            f"GET {HEALTH}: {reply}",
            "retry; if it persists, tell the "
            "gateway's operator (local stack: `hokusai gateway status`)",
        )
    if reply.status == 200:
        return ok("gateway", f"GET {HEALTH} → 200")
    if reply.status == 404:
        return fail(
            "gateway",
            f"GET {HEALTH} → 404: this server is not a Hokusai gateway",
            "check the host and port in the URL",
        )
    return fail(
        "gateway",
        f"GET {HEALTH} → {reply.status}: the gateway cannot check keys now",
        "its authz service is down: tell the gateway's operator (local stack: "
        "`hokusai gateway status` shows which part is down)",
    )


def check_mlflow(conn: Connection, fetch: Fetch) -> Result:
    reply = _get(fetch, conn, conn.endpoint.path(MLFLOW_HEALTH))
    if isinstance(reply, str):
        return fail(
            "mlflow",
            f"GET {MLFLOW_HEALTH}: {reply}",
            "retry; if it persists, tell the gateway's operator",
        )
    if reply.status == 200:
        return ok("mlflow", f"GET {MLFLOW_HEALTH} → 200")
    if reply.json().get("error") == "mlflow_unavailable":
        return fail(
            "mlflow",
            f"GET {MLFLOW_HEALTH} → {reply.status} mlflow_unavailable: the gateway cannot "
            "reach MLflow (your key is not the problem)",
            " ".join(reasons.steps("mlflow_unavailable", reasons.DEFAULT_NAMES)),
        )
    return fail(
        "mlflow",
        f"GET {MLFLOW_HEALTH} → {reply.status}: the MLflow server behind the "
        "gateway does not answer",
        "MLflow is down or unreachable from the gateway: "
        "tell the gateway's operator (local stack: `hokusai gateway status`)",
    )


# --- 7. the key, offline --------------------------------------------------------------------


def check_key(target: Target) -> tuple[Result, keyformat.ParsedKey | None]:
    """Format and checksum with no I/O (``keyformat.parse``): garbage never goes on the wire."""
    if target.basic_auth:
        return fail(
            "key",
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD are set: MLflow "
            "sends them instead of the key",
            "unset MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
        ), None
    if not target.key:
        return fail(
            "key",
            f"no key: {target.names.key} is not set and no --key given",
            f"export {target.names.key}=<your hk_live_… key> (ask an admin for one: "
            "`hokusai auth create-key`)",
        ), None
    parsed = keyformat.parse(target.key)
    if parsed is None:
        return fail(
            "key",
            f"{keyformat.label(target.key)} is malformed: {keyformat.problem(target.key)}",
            " ".join(reasons.steps("malformed_key", target.names)),
        ), None
    return ok(
        "key", f"{parsed.display_prefix}: well-formed, checksum ok, environment {parsed.env}"
    ), parsed


# --- 8. the key at the gateway, 9. its scopes -----------------------------------------------


def advice_for(
    code: str, key: keyformat.ParsedKey, names: reasons.Names = reasons.DEFAULT_NAMES
) -> str:
    """What to do about a denial, from the one table (``hokusai.reasons``)."""
    known = code if code in reasons.TABLE else None
    return " ".join(reasons.steps(known, names, key.display_prefix, key.env))


def check_access(
    conn: Connection,
    fetch: Fetch,
    key: keyformat.ParsedKey,
    token: str,
    names: reasons.Names = reasons.DEFAULT_NAMES,
) -> Result:
    reply = _get(
        fetch, conn, conn.endpoint.tracking_path + SEARCH_PATH, {"authorization": f"Bearer {token}"}
    )
    if isinstance(reply, str):
        return fail(
            "access",
            f"searching experiments: {reply}",
            "retry; if it persists, tell the gateway's operator",
        )
    if reply.status == 200:
        return ok("access", f"{key.display_prefix} accepted: experiments/search → 200")
    code = str(reply.json().get("error", ""))
    if code:
        return fail(
            "access",
            f"{key.display_prefix} refused: experiments/search → {reply.status} {code}",
            advice_for(code, key, names),
        )
    return fail(
        "access",
        f"experiments/search → {reply.status} without a gateway error code",
        "the gateway or MLflow answered unexpectedly: check the URL, then tell the "
        "gateway's operator",
    )


def _scopes(reply: Reply) -> list[str] | None:
    body = reply.json()
    nested = body.get("key")
    for holder in (body, nested if isinstance(nested, dict) else {}):
        scopes = holder.get("scopes")
        if isinstance(scopes, list) and all(isinstance(s, str) for s in scopes):
            return list(scopes)
    return None


def check_scopes(conn: Connection, fetch: Fetch, key: keyformat.ParsedKey, token: str) -> Result:
    """Scopes from the keys API's whoami when it answers; otherwise read access is all we know."""
    reply = _get(fetch, conn, conn.endpoint.path(WHOAMI), {"authorization": f"Bearer {token}"})
    scopes = _scopes(reply) if isinstance(reply, Reply) and reply.status == 200 else None
    if scopes is None:
        return ok(
            "scopes",
            f"read access verified (write access not checked: the gateway has no {WHOAMI})",
        )
    listed = ", ".join(scopes) or "none"
    if WRITE_SCOPES & set(scopes):
        return ok("scopes", f"{listed}: can read and write")
    return ok("scopes", f"{listed}: read only — logging runs needs mlflow:write")
