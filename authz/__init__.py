"""Hokusai Gateway: API-key authorization for Envoy in front of MLflow and other HTTP services.

The map in one paragraph (the whole of it, with the import rules a test enforces, is
``docs/architecture.md``): ``check/`` is the Check pipeline, read top to bottom as its phases;
``keys/`` the key as a value (and the central key policy); ``storage/`` everything that talks to
Postgres or Redis (lookup, caches, the check store, invalidation, migrations, the usage, events
and policy SQL); ``transports/`` how Envoy and NGINX reach the Check (HTTP, gRPC,
RateLimitService, AccessLogService), where protobuf stops; ``ratelimit/`` and ``usage/`` per-key
limits and analytics; ``events/`` who tried what (authentication events off the hot path) and the
expiry-warning webhook; ``management/`` key operations for the CLI and the REST API (``api/``);
``telemetry/`` metrics, spans and the redacting logger; ``resilience/`` the one breaker and single
flight; ``errors.py`` the one exception tree; ``settings.py`` the one settings object;
``server.py`` builds every part in one place.
"""

__version__ = "0.1.0"
