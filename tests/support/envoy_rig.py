"""A real Envoy in front of in-thread authz servers and a static upstream (rate-limit e2e tests).

``Upstream`` answers ``/t/…`` with 200 (``/t/status/NNN`` answers NNN); ``envoy_bootstrap`` is
the gateway's own configuration (``cli.envoy_config.render``) routing ``/t/`` there, with every
authz instance in the ``authz_grpc`` cluster.
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any

from cli import envoy_config as ec
from tests.support.authz import RunningAuthz


class Upstream(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        parts = self.path.split("?")[0].split("/")
        status = int(parts[3]) if len(parts) > 3 and parts[2] == "status" else 200
        body = b'{"ok": true}'
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


def envoy_bootstrap(
    port: int,
    admin: int,
    upstream: int,
    authz: list[RunningAuthz],
    *,
    transport: ec.Transport = "grpc",
    rate_limit: bool = True,
) -> dict[str, Any]:
    """``rate_limit`` False: no global ratelimit filter (HOKUSAI_RATE_LIMIT_ENFORCEMENT=check)."""
    first = authz[0].ports
    options = ec.EnvoyOptions(
        listen_address="127.0.0.1",
        http_port=port,
        admin_port=admin,
        tls_cert_path=None,
        tls_key_path=None,
        transport=transport,
        authz_grpc=ec.Endpoint("127.0.0.1", first.grpc),
        authz_http=ec.Endpoint("127.0.0.1", first.http),
        mlflow=ec.Endpoint("127.0.0.1", upstream),
        keys_api=None,
        # A generous time-out: on a loaded test machine a 100 ms one fails open now and then.
        rate_limit=ec.RateLimitOptions(enabled=rate_limit, timeout=2.0),
        access_log_grpc=True,
        access_log_stdout="off",
        extra_routes=(ec.Route("/t/", "upstream"),),
        extra_clusters=(ec.Cluster("upstream", ec.Endpoint("127.0.0.1", upstream)),),
    )
    config = ec.render(options)
    grpc_cluster = next(
        c for c in config["static_resources"]["clusters"] if c["name"] == ec.AUTHZ_GRPC_CLUSTER
    )
    grpc_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
        {
            "endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": a.ports.grpc}}
            }
        }
        for a in authz
    ]
    # Round robin would alternate Check and RateLimit calls between the two instances, so every
    # RLS call of a request sequence would land on the same one; random spreads both over both.
    grpc_cluster["lb_policy"] = "RANDOM"
    return config
