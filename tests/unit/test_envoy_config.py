"""TESTPLAN "Envoy configuration checks" over the rendered dict (only envoy/*.yaml is read)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from authz.transports import wire
from bench import envoy as bench_envoy
from cli import envoy_config as ec

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
TRANSPORTS = ("grpc", "http")


def _options(transport: str, **changes: Any) -> ec.EnvoyOptions:
    return replace(ec.EnvoyOptions(), transport=transport, **changes)  # type: ignore[arg-type]


def _hcm(config: dict[str, Any], listener: str = "gateway") -> dict[str, Any]:
    (found,) = [x for x in config["static_resources"]["listeners"] if x["name"] == listener]
    (chain,) = found["filter_chains"]
    (manager,) = chain["filters"]
    return manager["typed_config"]  # type: ignore[no-any-return]


def _filters(config: dict[str, Any]) -> list[dict[str, Any]]:
    return _hcm(config)["http_filters"]  # type: ignore[no-any-return]


def _filter(config: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [f for f in _filters(config) if f["name"] == name]
    return found["typed_config"]  # type: ignore[no-any-return]


def _routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    (vhost,) = _hcm(config)["route_config"]["virtual_hosts"]
    return vhost["routes"]  # type: ignore[no-any-return]


def _authz_disabled(route: dict[str, Any]) -> bool:
    per_filter = route.get("typed_per_filter_config", {}).get(ec.EXT_AUTHZ, {})
    return bool(per_filter.get("disabled"))


@pytest.fixture(params=TRANSPORTS)
def config(request: pytest.FixtureRequest) -> dict[str, Any]:
    return ec.render(_options(request.param))


# --- ext_authz ------------------------------------------------------------------------------


def test_ext_authz_fails_closed_with_503(config: dict[str, Any]) -> None:
    authz = _filter(config, ec.EXT_AUTHZ)
    assert authz["failure_mode_allow"] is False
    assert authz["status_on_error"] == {"code": 503}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ext_authz_timeout_is_explicit(transport: str) -> None:
    authz = _filter(ec.render(_options(transport, authz_timeout=0.3)), ec.EXT_AUTHZ)
    service = authz["grpc_service"] if transport == "grpc" else authz["http_service"]["server_uri"]
    assert service["timeout"] == "0.3s"


def test_allowed_headers_restricted_to_what_check_needs(config: dict[str, Any]) -> None:
    patterns = _filter(config, ec.EXT_AUTHZ)["allowed_headers"]["patterns"]
    names = {p["exact"] for p in patterns}
    assert all(set(p) == {"exact"} for p in patterns)
    assert names == {
        "authorization",
        "x-api-key",
        "host",
        "x-forwarded-for",
        "x-request-id",
        "traceparent",
        "tracestate",
        # browser sessions: the cookie, the same-origin rule, page loads; GraphQL's body type
        "cookie",
        "origin",
        "sec-fetch-site",
        "sec-fetch-mode",
        "sec-fetch-dest",
        "content-type",
    }
    assert not names & {"accept", "referer", "user-agent"}


def test_no_body_buffering_but_graphql_and_route_cache_kept(config: dict[str, Any]) -> None:
    authz = _filter(config, ec.EXT_AUTHZ)
    assert "with_request_body" not in authz
    assert authz["clear_route_cache"] is False
    names = [f["name"] for f in _filters(config)]
    assert "envoy.filters.http.buffer" not in names
    with_body = [
        r
        for r in _routes(config)
        if "check_settings" in r.get("typed_per_filter_config", {}).get(ec.EXT_AUTHZ, {})
    ]
    assert [r["match"] for r in with_body] == [{"path": wire.MLFLOW_GRAPHQL_PATH}]
    body = with_body[0]["typed_per_filter_config"][ec.EXT_AUTHZ]["check_settings"]
    assert body["with_request_body"] == {"max_request_bytes": 65536, "allow_partial_message": False}


def test_nothing_after_ext_authz_clears_the_route_cache(config: dict[str, Any]) -> None:
    names = [f["name"] for f in _filters(config)]
    after = _filters(config)[names.index(ec.EXT_AUTHZ) + 1 :]
    for item in after:
        assert not item["typed_config"].get("clear_route_cache")
    assert {f["name"] for f in after} <= {
        "hokusai.strip_api_key_query",
        "envoy.filters.http.ratelimit",
        "envoy.filters.http.router",
    }


def test_grpc_mode_uses_v3_on_an_http2_cluster() -> None:
    config = ec.render(_options("grpc"))
    authz = _filter(config, ec.EXT_AUTHZ)
    assert authz["transport_api_version"] == "V3"
    assert authz["grpc_service"]["envoy_grpc"]["cluster_name"] == ec.AUTHZ_GRPC_CLUSTER
    (cluster,) = [
        c for c in config["static_resources"]["clusters"] if c["name"] == ec.AUTHZ_GRPC_CLUSTER
    ]
    options = cluster["typed_extension_protocol_options"]
    http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in http["explicit_http_config"]


def test_http_mode_prefix_identity_and_metadata_from_wire() -> None:
    service = _filter(ec.render(_options("http")), ec.EXT_AUTHZ)["http_service"]
    assert service["path_prefix"] == wire.HTTP_CHECK_PATH_PREFIX
    response = service["authorization_response"]
    upstream = [p["exact"] for p in response["allowed_upstream_headers"]["patterns"]]
    metadata = [p["exact"] for p in response["dynamic_metadata_from_headers"]["patterns"]]
    assert upstream == list(wire.IDENTITY_HEADERS)
    assert metadata == list(wire.METADATA_HEADERS)


# --- header sanitation ----------------------------------------------------------------------


def test_identity_headers_stripped_first_before_ext_authz(config: dict[str, Any]) -> None:
    filters = _filters(config)
    first = filters[0]
    assert first["name"] == "hokusai.strip_identity_headers"
    mutations = first["typed_config"]["mutations"]["request_mutations"]
    assert mutations == [{"remove_on_match": {"key_matcher": {"prefix": wire.HEADER_PREFIX}}}]
    names = [f["name"] for f in filters]
    assert names.index("hokusai.strip_identity_headers") < names.index(ec.EXT_AUTHZ)


def test_api_key_query_removed_after_ext_authz_in_both_modes(config: dict[str, Any]) -> None:
    names = [f["name"] for f in _filters(config)]
    assert names.index(ec.EXT_AUTHZ) < names.index("hokusai.strip_api_key_query")
    mutations = _filter(config, "hokusai.strip_api_key_query")["mutations"]
    assert mutations["query_parameter_mutations"] == [{"remove": wire.API_KEY_QUERY_PARAM}]


def test_credentials_removed_on_every_authenticated_route(config: dict[str, Any]) -> None:
    for route in _routes(config):
        if "route" in route and route["name"] != "keys_api":
            assert set(route["request_headers_to_remove"]) >= set(wire.CREDENTIAL_HEADERS)


# --- connection manager, admin --------------------------------------------------------------


def test_remote_address_and_trusted_hops_from_options() -> None:
    manager = _hcm(ec.render(_options("grpc", trusted_hops=2)))
    assert manager["use_remote_address"] is True
    assert manager["xff_num_trusted_hops"] == 2


def test_underscores_rejected_and_paths_normalised(config: dict[str, Any]) -> None:
    manager = _hcm(config)
    assert manager["common_http_protocol_options"]["headers_with_underscores_action"] == (
        "REJECT_REQUEST"
    )
    assert manager["normalize_path"] is True
    assert manager["merge_slashes"] is True
    assert manager["path_with_escaped_slashes_action"] in (
        "UNESCAPE_AND_REDIRECT",
        "REJECT_REQUEST",
    )
    assert manager["max_request_headers_kb"] == 60
    assert manager["stream_idle_timeout"] == "300s"


def test_admin_on_loopback_only(config: dict[str, Any]) -> None:
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_tls_listener_hsts_and_redirect() -> None:
    config = ec.render(ec.EnvoyOptions())
    gateway = next(x for x in config["static_resources"]["listeners"] if x["name"] == "gateway")
    assert gateway["filter_chains"][0]["transport_socket"]["name"] == "envoy.transport_sockets.tls"
    headers = _hcm(config)["route_config"]["response_headers_to_add"]
    assert headers[0]["header"]["key"] == "strict-transport-security"
    (redirect_route,) = _hcm(config, "redirect")["route_config"]["virtual_hosts"][0]["routes"]
    assert redirect_route["redirect"]["https_redirect"] is True


def test_without_tls_routes_served_on_http_port_and_no_redirect() -> None:
    config = ec.render(ec.EnvoyOptions(tls_cert_path=None, tls_key_path=None, http_port=8081))
    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"]["port_value"] == 8081
    assert "transport_socket" not in listener["filter_chains"][0]


# --- routes ---------------------------------------------------------------------------------


def test_only_exact_health_paths_pages_and_keys_api_skip_ext_authz(
    config: dict[str, Any],
) -> None:
    forwarding = [r for r in _routes(config) if "redirect" not in r]  # redirects: below
    skipped = [r["match"] for r in forwarding if _authz_disabled(r)]
    assert skipped == [
        {"path": wire.MLFLOW_HEALTH_PATH},
        {"path": wire.HEALTH_PATH},
        {"path": "/login"},
        {"path": "/logout"},
        {"path": "/docs"},
        {"prefix": "/docs/"},
        {"prefix": "/_hokusai/static/"},
        {"prefix": wire.KEYS_API_PREFIX},
    ]


def test_both_mlflow_redirects_are_decided_before_authentication(config: dict[str, Any]) -> None:
    redirects = [r for r in _routes(config) if "redirect" in r]
    assert [r["match"] for r in redirects] == [
        {"path": "/api/mlflow"},
        {"path": "/mlflow"},
        {"prefix": "/mlflow/"},
    ]
    for route in redirects:
        assert _authz_disabled(route) and "route" not in route  # forwards nothing
        assert route["redirect"]["response_code"] == "PERMANENT_REDIRECT"  # 308: POSTs follow
    no_slash, old, old_prefix = (r["redirect"] for r in redirects)
    assert no_slash == {"path_redirect": "/api/mlflow/", "response_code": "PERMANENT_REDIRECT"}
    assert old["path_redirect"] == wire.MLFLOW_PREFIX
    assert old_prefix["prefix_rewrite"] == wire.MLFLOW_PREFIX
    names = [r["name"] for r in _routes(config)]
    assert names.index("mlflow_no_slash") < names.index("mlflow")
    assert names.index("old_mlflow_prefix") < names.index("not_found")


def test_mlflow_route_streams_and_rewrites(config: dict[str, Any]) -> None:
    (mlflow,) = [r for r in _routes(config) if r["name"] == "mlflow"]
    assert mlflow["match"] == {"prefix": wire.MLFLOW_PREFIX}
    assert mlflow["route"]["prefix_rewrite"] == "/"
    assert mlflow["route"]["timeout"] == "0s"
    assert mlflow["route"]["host_rewrite_literal"] == "localhost"


def test_mlflow_never_sees_the_session_cookie_or_the_browser_origin(config: dict[str, Any]) -> None:
    for name in ("mlflow", "mlflow_graphql"):
        (route,) = [r for r in _routes(config) if r["name"] == name]
        assert set(route["request_headers_to_remove"]) == {
            "authorization",
            "x-api-key",
            "cookie",
            "origin",
            "referer",
        }
    graphql = next(r for r in _routes(config) if r["name"] == "mlflow_graphql")
    assert graphql["route"]["prefix_rewrite"] == "/graphql"


def test_mlflows_who_am_i_calls_are_authenticated_and_answered_by_the_keys_api(
    config: dict[str, Any],
) -> None:
    account = [r for r in _routes(config) if r["name"].startswith("mlflow_account")]
    assert [r["match"]["path"] for r in account] == list(wire.MLFLOW_ACCOUNT_PATHS)
    for route in account:
        assert not _authz_disabled(route) and route["route"]["cluster"] == ec.KEYS_API_CLUSTER
        assert "cookie" in route["request_headers_to_remove"]
    names = [r["name"] for r in _routes(config)]
    assert names.index(account[-1]["name"]) < names.index("mlflow")  # before the prefix


def test_the_sign_in_redirect_reaches_the_browser() -> None:
    service = _filter(ec.render(_options("http")), ec.EXT_AUTHZ)["http_service"]
    allowed = service["authorization_response"]["allowed_client_headers"]["patterns"]
    assert {"exact": "location"} in allowed


def test_unknown_paths_get_the_json_404(config: dict[str, Any]) -> None:
    fallback = _routes(config)[-1]
    assert fallback["match"] == {"prefix": "/"}
    assert fallback["direct_response"]["status"] == 404
    body = fallback["direct_response"]["body"]["inline_string"]
    assert set(json.loads(body)) == {"error", "error_code", "message", "docs"}
    assert fallback["response_headers_to_add"][0]["header"] == {
        "key": "content-type",
        "value": "application/json",
    }
    assert not _authz_disabled(fallback)


# --- rate limits ----------------------------------------------------------------------------


ENVOY_ENFORCES = ec.RateLimitOptions(enabled=True)


def test_no_global_ratelimit_filter_by_default(config: dict[str, Any]) -> None:
    """HOKUSAI_RATE_LIMIT_ENFORCEMENT=check is the default: the Check decides, Envoy asks no
    RateLimitService and its routes carry no rate_limits."""
    assert "envoy.filters.http.ratelimit" not in [f["name"] for f in _filters(config)]
    assert not any("rate_limits" in r.get("route", {}) for r in _routes(config))


def test_rate_limit_filter_timeout_and_failure_mode_explicit() -> None:
    limit = _filter(
        ec.render(_options("http", rate_limit=ENVOY_ENFORCES)), "envoy.filters.http.ratelimit"
    )
    assert limit["timeout"] == "0.1s"
    assert limit["failure_mode_deny"] is False
    assert limit["domain"] == wire.RATE_LIMIT_DOMAIN
    assert limit["rate_limit_service"]["transport_api_version"] == "V3"
    deny = ec.RateLimitOptions(enabled=True, failure_mode_deny=True)
    denying = ec.render(_options("grpc", rate_limit=deny))
    assert _filter(denying, "envoy.filters.http.ratelimit")["failure_mode_deny"] is True


def test_rate_limit_descriptor_is_the_key_id_metadata() -> None:
    config = ec.render(_options("grpc", rate_limit=ENVOY_ENFORCES))
    (mlflow,) = [r for r in _routes(config) if r["name"] == "mlflow"]
    (action,) = mlflow["route"]["rate_limits"][0]["actions"]
    metadata = action["metadata"]
    assert metadata["descriptor_key"] == wire.RATE_LIMIT_DESCRIPTOR_KEY
    assert metadata["metadata_key"] == {
        "key": wire.METADATA_NAMESPACE,
        "path": [{"key": wire.KEY_ID_HEADER}],
    }


def test_local_rate_limit_before_ext_authz_and_optional() -> None:
    names = [f["name"] for f in _filters(ec.render(ec.EnvoyOptions()))]
    assert names.index("envoy.filters.http.local_ratelimit") < names.index(ec.EXT_AUTHZ)
    off = ec.render(ec.EnvoyOptions(local_rate_limit=None))
    assert "envoy.filters.http.local_ratelimit" not in [f["name"] for f in _filters(off)]


# --- access logs ----------------------------------------------------------------------------


def test_stdout_access_log_has_no_query_string_or_credential(config: dict[str, Any]) -> None:
    (stdout,) = [
        a for a in _hcm(config)["access_log"] if a["name"] == "envoy.access_loggers.stdout"
    ]
    text = " ".join(stdout["typed_config"]["log_format"]["json_format"].values()).upper()
    assert not re.search(r"%REQ\([^)]*:PATH[^)]*\)%", text)
    assert not re.search(r"%PATH(\((?!NQ)[^)]*\))?%", text)
    assert "%PATH(NQ" in text
    assert "AUTHORIZATION" not in text and "X-API-KEY" not in text and "COOKIE" not in text


def test_stdout_access_log_keeps_refused_requests_by_default() -> None:
    def stdout(lines: ec.AccessLog) -> list[dict[str, Any]]:
        config = ec.render(ec.EnvoyOptions(access_log_stdout=lines))
        return [a for a in _hcm(config)["access_log"] if a["name"] == "envoy.access_loggers.stdout"]

    (refused,) = stdout("refused")
    either = refused["filter"]["or_filter"]["filters"]
    assert either[0]["status_code_filter"]["comparison"]["op"] == "GE"
    assert either[0]["status_code_filter"]["comparison"]["value"]["default_value"] == 400
    assert either[1] == {"response_flag_filter": {}}  # resets and upstream failures too
    assert ec.EnvoyOptions().access_log_stdout == "refused"
    (every,) = stdout("all")
    assert "filter" not in every
    assert stdout("off") == []
    with pytest.raises(ValueError, match="access_log_stdout must be one of refused, all, off"):
        ec.EnvoyOptions(access_log_stdout="some")  # type: ignore[arg-type]


def test_grpc_access_log_to_authz(config: dict[str, Any]) -> None:
    (als,) = [
        a for a in _hcm(config)["access_log"] if a["name"] == "envoy.access_loggers.http_grpc"
    ]
    common = als["typed_config"]["common_config"]
    assert common["log_name"] == wire.ACCESS_LOG_NAME
    assert common["grpc_service"]["envoy_grpc"]["cluster_name"] == ec.AUTHZ_GRPC_CLUSTER


# --- options, bench, committed files ---------------------------------------------------------


def test_invalid_options_rejected() -> None:
    with pytest.raises(ValueError):
        ec.EnvoyOptions(tls_cert_path="/c", tls_key_path=None)
    with pytest.raises(ValueError):
        ec.EnvoyOptions(tls_cert_path=None, tls_key_path=None, http_port=0)
    with pytest.raises(ValueError):
        ec.EnvoyOptions(transport="smtp")  # type: ignore[arg-type]


def test_duration_never_uses_exponents() -> None:
    assert ec.duration(0.25) == "0.25s"
    assert ec.duration(300) == "300s"
    assert ec.duration(0.00001) == "0.00001s"


@pytest.mark.parametrize("variant", bench_envoy.BENCH_VARIANTS)
def test_bench_variants_render(variant: bench_envoy.BenchVariant) -> None:
    config = bench_envoy.render_bench(
        variant,
        port=1,
        admin_port=2,
        upstream=ec.Endpoint("127.0.0.1", 3),
        authz=ec.Endpoint("127.0.0.1", 4),
        api_keys=("a",),
    )
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    names = [f["name"] for f in _hcm(config, "bench")["http_filters"]]
    assert names[-1] == "envoy.filters.http.router"
    assert (ec.EXT_AUTHZ in names) == variant.startswith("ext_authz")


@pytest.mark.parametrize("name", sorted(ec.DEFAULTS))
def test_committed_yaml_matches_the_generator(name: str) -> None:
    committed = (REPO / "envoy" / name).read_text(encoding="utf-8")
    assert committed == ec.render_yaml(ec.DEFAULTS[name]), "run python -m cli.envoy_config --write"
