"""The static upstream every configuration proxies to: a second listener in the same Envoy that
answers with a ``direct_response``.

One build, one worker thread, the same few bytes for every configuration: the upstream's cost is
identical across A–F, so the ratios compare only what sits in front of it.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

BODY = "ok\n"


def upstream_listener(port: int) -> Json:
    route_config = {
        "name": "upstream",
        "virtual_hosts": [
            {
                "name": "upstream",
                "domains": ["*"],
                "routes": [
                    {
                        "match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": BODY}},
                    }
                ],
            }
        ],
    }
    hcm = {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network."
            "http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "upstream",
            "route_config": route_config,
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http."
                        "router.v3.Router"
                    },
                }
            ],
        },
    }
    return {
        "name": "upstream",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [hcm]}],
    }


def with_upstream(config: Json, port: int) -> Json:
    """``config`` (a bootstrap) plus the upstream listener on ``port``."""
    config["static_resources"]["listeners"].append(upstream_listener(port))
    return config
