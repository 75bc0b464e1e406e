"""The one settings object: every ``HOKUSAI_*`` environment variable is declared here.

Each field carries its variable name, default and description, so the configuration reference in
``docs/configuration.md`` is generated from this table (``hokusai settings --markdown``) and cannot
drift. ``Settings.from_env`` validates everything up front and raises ``SettingsError`` naming the
variable at fault. Nothing else in the code base reads ``os.environ`` for ``HOKUSAI_`` values.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from authz.keys.durations import format_duration, parse_duration, parse_rate
from hokusai.variables import CLIENT_VARIABLES

PREFIX = "HOKUSAI_"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _int(raw: str) -> int:
    return int(raw.strip())


def _seconds(raw: str) -> float:
    return parse_duration(raw).total_seconds()


def _str(raw: str) -> str:
    return raw.strip()


def _envs(raw: str) -> frozenset[str]:
    values = frozenset(v.strip() for v in raw.split(",") if v.strip())
    if not values or not values <= {"live", "test"}:
        raise ValueError("expected a comma-separated subset of live,test")
    return values


def _cidrs(raw: str) -> tuple[str, ...]:
    return tuple(str(ipaddress.ip_network(v.strip())) for v in raw.split(",") if v.strip())


def _durations(raw: str) -> tuple[float, ...]:
    values = tuple(sorted({_seconds(v) for v in raw.split(",") if v.strip()}, reverse=True))
    if not values or min(values) <= 0:
        raise ValueError("expected a comma-separated list of positive durations, e.g. 14d,3d,1d")
    return values


# Which requests Envoy's stdout access log keeps (cli/envoy_config.py renders the filter).
ACCESS_LOG_LINES = ("refused", "all", "off")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


def setting(default: Any, parse: Callable[[str], Any], doc: str, *, secret: bool = False) -> Any:
    """Declare one setting: its default, how its environment value is parsed, and what it does."""
    return field(default=default, metadata={"parse": parse, "doc": doc, "secret": secret})


@dataclass(frozen=True, slots=True)
class Settings:
    # --- stores -------------------------------------------------------------------------------
    database_url: str = setting(
        "",
        _str,
        "PostgreSQL URL (postgresql://user:pass@host:port/db). Empty: the local stack's.",
        secret=True,
    )
    redis_url: str = setting(
        "",
        _str,
        "Redis URL (redis://host:port/0). Empty: no shared cache, no global limits.",
        secret=True,
    )
    database_pool_size: int = setting(10, _int, "Connections in the authz server's pool.")
    database_timeout: float = setting(
        0.5,
        _seconds,
        "Time-out for one database call on the check path; keep it below Envoy's "
        "ext_authz time-out (1 s) so a slow database is a clean 503.",
    )
    redis_timeout: float = setting(
        0.05, _seconds, "Time-out for one Redis call; kept well below the ext_authz time-out."
    )

    # --- keys ---------------------------------------------------------------------------------
    bcrypt_cost: int = setting(
        8, _int, "bcrypt cost for stored secrets (4-14). 8 verifies in about 13 ms on 2 cores."
    )
    pepper: str = setting(
        "",
        _str,
        "Server-side secret for HMAC fingerprints of verified keys. Empty: random per "
        "process (fingerprints then stay in-process only).",
        secret=True,
    )
    accepted_envs: frozenset[str] = setting(
        frozenset({"live", "test"}), _envs, "Key environments this gateway accepts: live,test."
    )
    default_rotation_grace: float = setting(
        86400.0, _seconds, "How long the old key keeps working after a rotation."
    )
    query_param_enabled: bool = setting(
        True, _bool, "Accept the key in the api_key query parameter (always removed upstream)."
    )

    # --- check path ---------------------------------------------------------------------------
    grpc_host: str = setting("127.0.0.1", _str, "Address the gRPC servers bind to.")
    grpc_port: int = setting(9191, _int, "Port of ext_authz Check, RateLimitService, ALS, health.")
    http_check_host: str = setting("127.0.0.1", _str, "Address the HTTP check server binds to.")
    http_check_port: int = setting(9192, _int, "Port of the HTTP ext_authz / auth_request server.")
    local_cache_ttl: float = setting(
        10.0, _seconds, "How long a key record stays in the in-process cache."
    )
    local_cache_size: int = setting(200_000, _int, "Most key records kept in-process.")
    redis_cache_ttl: float = setting(300.0, _seconds, "How long a key record stays in Redis.")
    negative_cache_ttl: float = setting(
        1.0, _seconds, "How long an unknown key id is remembered as unknown."
    )
    stale_window: float = setting(
        300.0, _seconds, "While Postgres is unreachable, a record verified this recently serves."
    )
    bcrypt_threads: int = setting(2, _int, "Threads that run bcrypt verifications.")
    trusted_hops: int = setting(
        0, _int, "Proxies in front of Envoy whose X-Forwarded-For entries are trusted."
    )
    last_used_interval: float = setting(
        60.0, _seconds, "At most one last_used_at write per key per interval (batched)."
    )
    docs_base_url: str = setting(
        "/docs/errors", _str, "Prefix of the docs link in every denial body."
    )

    # --- rate limits and usage (issue 5; authz/ratelimit/, authz/usage/) ----------------------
    rate_limit_default: int = setting(
        36_000,
        parse_rate,
        "Requests per hour for keys without their own limit (e.g. 1000/h, "
        "50/min); 0 = unlimited, only when written explicitly. 10/s sustained: an MLflow "
        "training loop logging per step stays under it.",
    )
    rate_limit_default_burst: int = setting(
        500, _int, "Requests a key without its own burst may make at once (capped at its limit)."
    )
    rate_limit_mode: str = setting(
        "exact",
        _choice("exact", "approximate"),
        "exact: never exceeded across instances; a hot key spends tokens leased from Redis (no "
        "I/O per request), a slow key makes one atomic Redis call per request. approximate: "
        "in-process counters synced to Redis (bounded overshoot, no I/O per request).",
    )
    rate_limit_sync_interval: float = setting(
        0.1, _seconds, "approximate mode: how often local counters are added to Redis."
    )
    rate_limit_redis_down: str = setting(
        "open",
        _choice("open", "deny"),
        "When Redis is unreachable: open (allow, counted) or "
        "deny (503 through Envoy's failure_mode_deny). Authentication is never affected.",
    )
    usage_flush_interval: float = setting(
        10.0, _seconds, "How often usage rollups from the access log are written to Postgres."
    )
    usage_retention: float = setting(
        30 * 86400.0, _seconds, "How long usage rollups are kept (hokusai db prune-usage)."
    )

    # --- where the per-key limit is enforced (issue 7's E; authz/check/checker.py phase 8) ------
    rate_limit_enforcement: str = setting(
        "check",
        _choice("check", "envoy"),
        "check: the Check itself decides (429 from ext_authz, no second hop; no I/O for a hot "
        "key's request); envoy: Envoy's global ratelimit filter calls authz's RateLimitService "
        "after the Check (a second gRPC hop per request; see docs/rate-limits.md).",
    )

    # --- telemetry ----------------------------------------------------------------------------
    log_level: str = setting("info", _choice("debug", "info", "warning", "error"), "Log level.")
    access_log: str = setting(
        "refused",
        _choice(*ACCESS_LOG_LINES),
        "Which requests Envoy's JSON access log on stdout keeps (hokusai gateway up; the "
        "committed Envoy configurations use the default): refused — every answer of 400 or "
        "more or with a response flag (denials, limits, upstream failures); all — every "
        "request (about 5 % of throughput); off. Usage counts every request either way.",
    )

    # --- keys REST API (authz/api, issue 6) ----------------------------------------------------
    api_host: str = setting("127.0.0.1", _str, "Address the keys REST API binds to.")
    api_port: int = setting(9193, _int, "Port of the keys REST API (behind Envoy).")
    api_pool_size: int = setting(
        4, _int, "Postgres connections the keys REST API keeps for key operations."
    )

    # --- telemetry exporters and log format (authz/telemetry/, issue 8) --------------------------
    metrics_host: str = setting(
        "127.0.0.1", _str, "Address of the Prometheus scrape endpoint (0.0.0.0 in a pod)."
    )
    metrics_port: int = setting(
        0, _int, "Port of the Prometheus scrape endpoint (/metrics); 0 turns it off."
    )
    otlp_endpoint: str = setting(
        "",
        _str,
        "OTLP/gRPC collector (http://host:4317) for metrics and Check spans; "
        "empty: no OTLP export and no span work at all.",
    )
    log_format: str = setting(
        "json", _choice("json", "text"), "Log lines as JSON objects or text; both redacted."
    )
    service_name: str = setting("hokusai-authz", _str, "service.name of metrics and spans.")

    # --- browser sessions and sign-in (issue 13; authz/sessions/, authz/pages/) ---------------
    session_idle_timeout: float = setting(
        8 * 3600.0,
        _seconds,
        "A browser session unused this long ends (a working day; checked within about a "
        "minute, the batching interval of last-seen writes).",
    )
    session_absolute_timeout: float = setting(
        24 * 3600.0,
        _seconds,
        "A browser session ends this long after sign-in, however busy: a stolen cookie is worth "
        "at most a day, and signing in again is one paste of the key.",
    )
    signin_rate_limit: int = setting(
        600,
        parse_rate,
        "Sign-in attempts per client address (e.g. 10/min): wrong keys in a loop are slowed.",
    )
    signin_burst: int = setting(10, _int, "Sign-in attempts one address may make at once.")
    session_prune_interval: float = setting(
        3600.0,
        _seconds,
        "How often the keys API deletes ended sessions (one instance at a time; also "
        "hokusai db prune-sessions).",
    )

    # --- authentication events and expiry warnings (issue 15; authz/events/) -------------------
    events_queue_size: int = setting(
        100_000,
        _int,
        "Distinct authentication events held in memory between flushes (identical ones of a "
        "second are one, counted); beyond it new ones are dropped and counted (never blocking "
        "a check). 0 turns recording off.",
    )
    events_flush_interval: float = setting(
        1.0, _seconds, "How often authentication events are written to Postgres (one batch)."
    )
    events_retention: float = setting(
        90 * 86400.0,
        _seconds,
        "How long authentication events are kept (pruned hourly; hokusai db prune-events).",
    )
    events_instance: str = setting("", _str, "The instance name events carry. Empty: hostname:pid.")
    expiry_webhook_url: str = setting(
        "",
        _str,
        "URL that receives expiry warnings (POST, JSON, signed). Empty: no webhook.",
    )
    expiry_webhook_secret: str = setting(
        "",
        _str,
        "Secret of the X-Hokusai-Signature HMAC-SHA256 over 'timestamp.body' of each warning.",
        secret=True,
    )
    expiry_warning_thresholds: tuple[float, ...] = setting(
        (14 * 86400.0, 3 * 86400.0, 86400.0),
        _durations,
        "How long before a key expires the webhook warns, once per key and threshold.",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every ``HOKUSAI_*`` variable; unknown ``HOKUSAI_*`` names are an error too."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        known = {PREFIX + f.name.upper() for f in dataclasses.fields(cls)}
        retired = sorted(name for name in source if name in RETIRED)
        if retired:
            raise SettingsError(f"{retired[0]}: {RETIRED[retired[0]]}")
        unknown = sorted(
            name
            for name in source
            if name.startswith(PREFIX) and name not in known and name not in IGNORED
        )
        if unknown:
            raise SettingsError(f"{unknown[0]}: unknown setting (see docs/configuration.md)")
        for f in dataclasses.fields(cls):
            name = PREFIX + f.name.upper()
            if name in source:
                try:
                    values[f.name] = f.metadata["parse"](source[name])
                except ValueError as exc:
                    raise SettingsError(f"{name}: {exc}") from None
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Cross-field and range checks; raises ``SettingsError`` naming the variable."""
        checks: list[tuple[str, bool, str]] = [
            ("bcrypt_cost", 4 <= self.bcrypt_cost <= 14, "must be between 4 and 14"),
            ("database_pool_size", self.database_pool_size >= 1, "must be at least 1"),
            ("bcrypt_threads", self.bcrypt_threads >= 1, "must be at least 1"),
            ("trusted_hops", self.trusted_hops >= 0, "must not be negative"),
            ("redis_timeout", self.redis_timeout > 0, "must be positive"),
            ("database_timeout", self.database_timeout > 0, "must be positive"),
            ("grpc_port", 0 <= self.grpc_port < 65536, "must be a port number"),
            ("http_check_port", 0 <= self.http_check_port < 65536, "must be a port number"),
            # rate limits and usage (issue 5)
            ("rate_limit_default", self.rate_limit_default >= 0, "must not be negative"),
            ("rate_limit_default_burst", self.rate_limit_default_burst >= 1, "must be at least 1"),
            ("rate_limit_sync_interval", self.rate_limit_sync_interval > 0, "must be positive"),
            ("usage_flush_interval", self.usage_flush_interval > 0, "must be positive"),
            ("usage_retention", self.usage_retention > 0, "must be positive"),
            ("metrics_port", 0 <= self.metrics_port < 65536, "must be a port number"),
            (
                "otlp_endpoint",
                self.otlp_endpoint == "" or self.otlp_endpoint.startswith(("http://", "https://")),
                "must start with http:// or https://",
            ),
            ("service_name", bool(self.service_name), "must not be empty"),
            ("api_port", 0 <= self.api_port < 65536, "must be a port number"),
            ("api_pool_size", self.api_pool_size >= 1, "must be at least 1"),
            ("session_idle_timeout", self.session_idle_timeout > 0, "must be positive"),
            ("session_absolute_timeout", self.session_absolute_timeout > 0, "must be positive"),
            ("signin_rate_limit", self.signin_rate_limit >= 1, "must be at least 1/h"),
            ("signin_burst", self.signin_burst >= 1, "must be at least 1"),
            ("session_prune_interval", self.session_prune_interval > 0, "must be positive"),
            ("events_queue_size", self.events_queue_size >= 0, "must not be negative"),
            ("events_flush_interval", self.events_flush_interval > 0, "must be positive"),
            ("events_retention", self.events_retention > 0, "must be positive"),
            (
                "expiry_webhook_url",
                self.expiry_webhook_url == ""
                or self.expiry_webhook_url.startswith(("http://", "https://")),
                "must start with http:// or https://",
            ),
            (
                "expiry_webhook_secret",
                not self.expiry_webhook_url or bool(self.expiry_webhook_secret),
                "required with HOKUSAI_EXPIRY_WEBHOOK_URL (receivers verify the signature)",
            ),
        ]
        for name, ok, message in checks:
            if not ok:
                raise SettingsError(f"{PREFIX}{name.upper()}: {message}")

    def replace(self, **changes: Any) -> Settings:
        new: Settings = dataclasses.replace(self, **changes)
        new.validate()
        return new


# Variables with the prefix that belong to the tests and tools, not to the servers — and the Python
# client's own (HOKUSAI_API_KEY, HOKUSAI_GATEWAY_URL, …), named once in the client package: the
# shell that runs `hokusai auth …` is often one where a data scientist configured the client.
IGNORED = frozenset(
    {
        "HOKUSAI_TEST_DATABASE_URL",
        "HOKUSAI_TEST_REDIS_URL",
        "HOKUSAI_DATA_DIR",
        "HOKUSAI_ACTOR",
        *CLIENT_VARIABLES,
    }
)


# Variables that once were settings: naming one is an error that says where its job went.
RETIRED = {
    "HOKUSAI_MAX_KEY_LIFETIME": "retired: the maximum key lifetime is central policy now, held "
    "to by every process and every existing key: `hokusai policy set --max-lifetime 365d` "
    "(docs/policy.md)",
}


def reference_markdown() -> str:
    """The configuration reference table, generated from the declarations above."""
    lines = ["| variable | default | description |", "| --- | --- | --- |"]
    for f in dataclasses.fields(Settings):
        default = f.default
        if isinstance(default, frozenset):
            default = ",".join(sorted(default))
        elif isinstance(default, tuple):
            default = ",".join(format_duration(timedelta(seconds=v)) for v in default)
        shown = "(empty)" if default == "" else str(default)
        lines.append(f"| `{PREFIX}{f.name.upper()}` | `{shown}` | {f.metadata['doc']} |")
    return "\n".join(lines) + "\n"


# --- the local stack's data directory (cli: db/auth read its stack.json; gateway up writes it) ---
def data_dir(env: Mapping[str, str] | None = None) -> str:
    """Where the local stack keeps its state: ``HOKUSAI_DATA_DIR``, else ``~/.hokusai``."""
    source = os.environ if env is None else env
    return source.get("HOKUSAI_DATA_DIR", "").strip() or os.path.expanduser("~/.hokusai")


# --- external stores for the test suite (tests/conftest.py); empty: start real local servers ---
@dataclass(frozen=True, slots=True)
class ExternalTestStores:
    database_url: str
    redis_url: str


def external_test_stores(env: Mapping[str, str] | None = None) -> ExternalTestStores:
    """``HOKUSAI_TEST_DATABASE_URL`` / ``HOKUSAI_TEST_REDIS_URL``: servers the tests use instead."""
    source = os.environ if env is None else env
    return ExternalTestStores(
        source.get("HOKUSAI_TEST_DATABASE_URL", "").strip(),
        source.get("HOKUSAI_TEST_REDIS_URL", "").strip(),
    )
