"""``hokusai-doctor``: why can't my client reach the gateway? One small check per step.

The checks run in the order a request travels — 1 URL, 2 DNS, 3 TCP, 4 TLS, 5 the gateway's
health, 6 MLflow behind it, 7 the key offline (format and checksum), 8 the key at the gateway,
9 its scopes, and with ``--write`` 10 a write round trip — and stop where a later check cannot
run. Each gives a ``Result``; every failure carries what to do.

The key is never printed: only its display prefix ``hk_<env>_<id>``. Every detail and advice line
also passes the ``Scrubber``, because exception texts may embed URLs or headers.
"""

from __future__ import annotations

from dataclasses import replace

from hokusai.doctor import network, probes, tls
from hokusai.doctor.network import Endpoint, check_url
from hokusai.doctor.probes import Connection, Fetch, advice_for
from hokusai.doctor.results import Result, passed, skips
from hokusai.doctor.target import Target, from_env, insecure_flag, mlflow_env
from hokusai.gateway import Reply
from hokusai.redact import Scrubber

__all__ = [
    "Connection",
    "Endpoint",
    "Fetch",
    "Reply",
    "Result",
    "Target",
    "advice_for",
    "check_url",
    "from_env",
    "insecure_flag",
    "mlflow_env",
    "passed",
    "run",
]


def _network(
    target: Target, endpoint: Endpoint, fetch: Fetch, results: list[Result]
) -> Connection | None:
    """DNS, TCP, TLS, gateway and MLflow health; the verified connection when TLS worked."""
    dns, addresses = network.check_dns(endpoint)
    results.append(dns)
    if addresses is None:
        results += skips(["tcp", "tls", "gateway", "mlflow"], "needs DNS")
        return None
    tcp = network.check_tcp(endpoint, addresses, target.timeout)
    results.append(tcp)
    if tcp.status != "ok":
        results += skips(["tls", "gateway", "mlflow"], "needs a TCP connection")
        return None
    handshake, context = tls.check_tls(endpoint, target)
    results.append(handshake)
    if context is None:
        results += skips(["gateway", "mlflow"], "needs a trusted TLS connection")
        return None
    conn = Connection(endpoint, context, target.timeout)
    results += [probes.check_gateway(conn, fetch), probes.check_mlflow(conn, fetch)]
    return conn


def _key_at_gateway(
    target: Target, conn: Connection | None, fetch: Fetch, results: list[Result]
) -> None:
    key, parsed = probes.check_key(target)
    results.append(key)
    later = ["access", "scopes"] + (
        ["experiment", "run", "log", "upload", "download", "delete"] if target.write else []
    )
    if parsed is None or conn is None or target.key is None:
        results += skips(
            later, "needs a well-formed key" if parsed is None else "needs a connection"
        )
        return
    access = probes.check_access(conn, fetch, parsed, target.key, target.names)
    results.append(access)
    if access.status != "ok":
        results += skips(later[1:], "needs an accepted key")
        return
    results.append(probes.check_scopes(conn, fetch, parsed, target.key))
    if target.write:
        from hokusai.doctor.write import run_write

        results += run_write(conn.endpoint, target, parsed)


def run(target: Target, fetch: Fetch | None = None) -> list[Result]:
    """Every check in order; each result already scrubbed of key material."""
    fetch = fetch or probes.https_get  # looked up per run so a test can observe the calls
    url, endpoint = check_url(target.url, target.url_kind, target.names)
    results = [url]
    conn = None
    if endpoint is None:
        results += skips(["dns", "tcp", "tls", "gateway", "mlflow"], "needs a usable URL")
    else:
        conn = _network(target, endpoint, fetch, results)
    _key_at_gateway(target, conn, fetch, results)
    scrub = Scrubber([target.key])
    return [replace(r, detail=scrub(r.detail), advice=scrub(r.advice)) for r in results]
