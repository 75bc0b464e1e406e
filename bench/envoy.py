"""The benchmark's Envoy bootstraps (``python -m bench``), built from the gateway's own builders.

``render_bench(variant, …)`` is plain HTTP on one port with every path going to the upstream:
``plain`` (Envoy alone), ``api_key_auth`` (Envoy's native filter), and the gateway's ext_authz
filter over gRPC or HTTP (``ext_authz_grpc``/``ext_authz_http``), optionally with its global
ratelimit filter and gRPC access log. Benchmark-only: the gateway's configuration is
``cli/envoy_config.py``, which this module only imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from authz.transports import wire
from cli.envoy_config import (
    AUTHZ_GRPC_CLUSTER,
    AUTHZ_HTTP_CLUSTER,
    Endpoint,
    EnvoyOptions,
    Json,
    RateLimitOptions,
    Transport,
    address,
    admin,
    cluster,
    connection_manager,
    ext_authz_filter,
    key_id_rate_limits,
    rate_limit_filter,
    router_filter,
    strip_identity_filter,
    strip_query_credential_filter,
    typed,
)

BenchVariant = Literal["plain", "api_key_auth", "ext_authz_grpc", "ext_authz_http"]
BENCH_VARIANTS: tuple[BenchVariant, ...] = (
    "plain",
    "api_key_auth",
    "ext_authz_grpc",
    "ext_authz_http",
)
BENCH_UPSTREAM_CLUSTER = "upstream"


def _bench_options(
    port: int, admin_port: int, authz: Endpoint | None, transport: Transport
) -> EnvoyOptions:
    authz = authz or Endpoint("127.0.0.1", 9191)
    return EnvoyOptions(
        listen_address="127.0.0.1",
        http_port=port,
        admin_port=admin_port,
        tls_cert_path=None,
        tls_key_path=None,
        transport=transport,
        authz_grpc=authz,
        authz_http=authz,
        rate_limit=RateLimitOptions(enabled=False),
        local_rate_limit=None,
        access_log_grpc=False,
        access_log_stdout="off",
    )


def _bench_filters(
    variant: BenchVariant, options: EnvoyOptions, api_keys: Sequence[str]
) -> list[Json]:
    if variant == "plain":
        return [router_filter()]
    if variant == "api_key_auth":
        auth = {
            "name": "envoy.filters.http.api_key_auth",
            "typed_config": typed(
                "envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth",
                credentials=[
                    {"key": key, "client": f"client-{i}"} for i, key in enumerate(api_keys)
                ],
                key_sources=[{"header": wire.API_KEY_HEADER}],
            ),
        }
        return [auth, router_filter()]
    limit = [rate_limit_filter(options)] if options.rate_limit.enabled else []
    return [
        strip_identity_filter(),
        ext_authz_filter(options),
        strip_query_credential_filter(),
        *limit,
        router_filter(),
    ]


def render_bench(
    variant: BenchVariant,
    *,
    port: int,
    admin_port: int,
    upstream: Endpoint,
    authz: Endpoint | None = None,
    api_keys: Sequence[str] = (),
    rate_limit: bool = False,
    access_log_grpc: bool = False,
    authz_grpc: Endpoint | None = None,
) -> Json:
    """One benchmark bootstrap: plain HTTP on ``port``, every path to ``upstream``, no access log.

    ``authz`` is the gRPC server for ``ext_authz_grpc`` and the HTTP check server for
    ``ext_authz_http``; ``api_keys`` feed Envoy's native filter (sent in ``X-API-Key``).
    ``rate_limit`` adds the gateway's global ratelimit filter (per-key descriptor) and
    ``access_log_grpc`` its gRPC access log, both to the authz gRPC server (``authz_grpc``; the
    default is ``authz``, which is right for ``ext_authz_grpc``): issue 7's E variants.
    """
    if variant not in BENCH_VARIANTS:
        raise ValueError(f"unknown bench variant {variant!r}")
    if variant.startswith("ext_authz") and authz is None:
        raise ValueError(f"{variant} needs the authz address")
    if variant == "api_key_auth" and not api_keys:
        raise ValueError("api_key_auth needs at least one key")
    if (rate_limit or access_log_grpc) and not variant.startswith("ext_authz"):
        raise ValueError("rate_limit and access_log_grpc go with the ext_authz variants")
    options = _bench_options(
        port, admin_port, authz, "http" if variant == "ext_authz_http" else "grpc"
    )
    options = replace(
        options,
        rate_limit=RateLimitOptions(enabled=rate_limit),
        access_log_grpc=access_log_grpc,
        authz_grpc=authz_grpc or options.authz_grpc,
    )
    bench_route: Json = {"cluster": BENCH_UPSTREAM_CLUSTER, "timeout": "15s"}
    if rate_limit:
        bench_route["rate_limits"] = key_id_rate_limits()
    route_config = {
        "name": "bench",
        "virtual_hosts": [
            {
                "name": "bench",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": bench_route}],
            }
        ],
    }
    hcm = connection_manager(
        options, "bench", route_config, _bench_filters(variant, options, api_keys)
    )
    bench_clusters = [cluster(BENCH_UPSTREAM_CLUSTER, upstream)]
    if variant == "ext_authz_grpc" or rate_limit or access_log_grpc:
        bench_clusters.append(cluster(AUTHZ_GRPC_CLUSTER, options.authz_grpc, http2=True))
    if variant == "ext_authz_http":
        bench_clusters.append(cluster(AUTHZ_HTTP_CLUSTER, options.authz_http))
    listener = {
        "name": "bench",
        "address": address("127.0.0.1", port),
        "filter_chains": [{"filters": [hcm]}],
    }
    return {
        "admin": admin(admin_port),
        "static_resources": {"listeners": [listener], "clusters": bench_clusters},
    }
