"""``hokusai.setup()``: check the settings and the connection, point MLflow, say what was chosen.

1. **Settings** — arguments, then ``HOKUSAI_*`` variables, validated offline: a missing or
   malformed key or URL stops here, before any network I/O.
2. **Mock** — ``mock``/``HOKUSAI_MOCK_MODE``: MLflow onto a throwaway local store, no network.
3. **Preflight** — what would fail later (the auth plugin missing, a fallback without MLflow's
   SQL store, contradictory TLS variables) is refused now, still offline.
4. **Check**, in the order a request travels, each call retried by ``hokusai.retry``:
   gateway health ``/health`` → MLflow behind it ``/api/mlflow/health/mlflow`` → the key's
   identity and scopes ``/api/v1/auth/whoami`` → the key on the MLflow route (one
   ``experiments/search``: the route runs go to, through the same check as every request).
5. **Decide** — all answered: remote. ``UnavailableError`` (no connection, TLS, the gateway or
   MLflow down): fallback if enabled, else disabled if optional, else raise. Everything else —
   401, 403, 429, configuration — raises: a refused key never falls back.
6. **Configure MLflow** for the mode, announce the mode once (logging; ``warnings.warn`` for
   fallback and disabled), return the frozen ``Status``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os

from hokusai import errors, tracking
from hokusai.gateway import (
    HEALTH,
    MLFLOW_HEALTH,
    SEARCH,
    WHOAMI,
    Gateway,
    RequestsTransport,
    Transport,
)
from hokusai.manager import BaseExperimentManager, DisabledExperimentManager
from hokusai.retry import DEFAULT, RetryPolicy
from hokusai.settings import Settings
from hokusai.status import Identity, Mode, Status

log = logging.getLogger("hokusai")
EXPIRY_WARNING = dt.timedelta(days=14)
_LAST: tuple[Settings, Status] | None = None  # the latest setup(): experiment_manager() reuses it


def setup(
    api_key: str | None = None,
    url: str | None = None,
    *,
    fallback: bool | None = None,
    mock: bool | None = None,
    optional: bool | None = None,
    ca_cert: str | os.PathLike[str] | None = None,
) -> Status:
    """Configure MLflow for the Hokusai gateway and return what was chosen and why.

    Arguments win over their variables: ``HOKUSAI_API_KEY``, ``HOKUSAI_GATEWAY_URL``,
    ``HOKUSAI_CA_CERT``, ``HOKUSAI_MOCK_MODE``, ``HOKUSAI_MLFLOW_FALLBACK``,
    ``HOKUSAI_MLFLOW_OPTIONAL``. Raises ``ConfigurationError`` before any network I/O for bad
    settings, and the typed errors of ``hokusai.errors`` when the gateway refuses the key or
    (without fallback or optional) cannot be reached.
    """
    settings = Settings.resolve(
        api_key, url, fallback=fallback, mock=mock, optional=optional, ca_cert=ca_cert
    )
    return connect(settings, RequestsTransport())


def connect(settings: Settings, transport: Transport, policy: RetryPolicy = DEFAULT) -> Status:
    """Phases 2–6 of the module docstring, with the transport and retry policy given."""
    global _LAST
    status = _choose(settings, transport, policy)
    _LAST = (settings, status)
    return status


def _choose(settings: Settings, transport: Transport, policy: RetryPolicy) -> Status:
    if settings.mock:
        return announce(
            Status(
                Mode.MOCK, tracking.use_mock(), "mock mode: in-memory tracking, no server contacted"
            )
        )
    tracking.preflight(settings)
    gateway = Gateway(settings, transport, policy)
    try:
        identity, notes = check(gateway)
    except errors.UnavailableError as exc:
        return announce(unavailable(settings, exc))
    warned = tracking.use_remote(settings) + notes
    return announce(
        Status(
            Mode.REMOTE,
            settings.tracking_uri,
            f"the gateway accepted {identity.key}",
            identity,
            warned,
            settings.url,
            settings.optional,
        )
    )


# --- 4. the checks ------------------------------------------------------------------------------


def check(gateway: Gateway) -> tuple[Identity, tuple[str, ...]]:
    """Every check in order; the key's identity and anything worth a warning."""
    check_gateway(gateway)
    check_mlflow(gateway)
    identity, notes = whoami(gateway)
    check_access(gateway)
    return identity, notes + identity_notes(identity)


def check_gateway(gateway: Gateway) -> None:
    reply = gateway.get(HEALTH)
    if reply.status == 200:
        return
    if reply.status == 404:
        raise errors.build(
            "not_found",
            gateway.context,
            status=404,
            message=(f"GET {HEALTH} → 404: {gateway.context.gateway} is not a Hokusai gateway"),
        )
    raise errors.build(
        "unavailable",
        gateway.context,
        status=reply.status,
        message=(f"GET {HEALTH} → {reply.status}: the gateway cannot check keys now"),
    )


def check_mlflow(gateway: Gateway) -> None:
    reply = gateway.get(MLFLOW_HEALTH)
    if reply.status != 200:
        raise errors.build(
            "mlflow_unavailable",
            gateway.context,
            status=reply.status,
            message=(
                f"GET {MLFLOW_HEALTH} → {reply.status}: MLflow behind the gateway does not answer"
            ),
        )


def whoami(gateway: Gateway) -> tuple[Identity, tuple[str, ...]]:
    """The key's identity; a keys API that does not answer is a warning, not a failure (the
    access check still proves the key)."""
    label = gateway.context.key or "the key"
    reply = gateway.get(WHOAMI, authenticated=True)
    if reply.status == 200:
        return Identity.from_whoami(reply.json(), label), ()
    if reply.status in (401, 403, 429):
        raise gateway.error(reply)
    return Identity(key=label), (
        f"the key's identity and scopes are unknown: GET {WHOAMI} → {reply.status}",
    )


def check_access(gateway: Gateway) -> None:
    reply = gateway.get(SEARCH, authenticated=True)
    if reply.status != 200:
        raise gateway.error(reply)


def identity_notes(identity: Identity, now: dt.datetime | None = None) -> tuple[str, ...]:
    notes = []
    if identity.scopes and not identity.can_write:
        notes.append(
            f"{identity.key} is read-only ({', '.join(identity.scopes)}): logging "
            "runs needs mlflow:write"
        )
    expires = _when(identity.expires_at)
    if expires is not None:
        left = expires - (now or dt.datetime.now(dt.UTC))
        if left < EXPIRY_WARNING:
            notes.append(f"{identity.key} expires {expires:%Y-%m-%d %H:%M} UTC: rotate it soon")
    return tuple(notes)


def _when(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# --- 5. unavailable -----------------------------------------------------------------------------


def unavailable(settings: Settings, exc: errors.UnavailableError) -> Status:
    """Fallback if enabled, else disabled if optional, else the error itself."""
    why = f"{exc.message} [{exc.reason}]" if exc.reason else exc.message
    if settings.fallback:
        uri = tracking.use_local(settings.data_dir)
        return Status(
            Mode.FALLBACK,
            uri,
            f"{why}; runs are logged to {settings.data_dir} and "
            "stay on this machine until you copy them",
            gateway_url=settings.url,
        )
    if settings.optional:
        uri = tracking.use_mock()
        return Status(
            Mode.DISABLED,
            uri,
            f"{why}; tracking calls are no-ops (optional mode)",
            gateway_url=settings.url,
        )
    raise exc


# --- 6. announce --------------------------------------------------------------------------------

_ANNOUNCED: set[tuple[Mode, str]] = set()


def announce(status: Status) -> Status:
    """Log the mode once per (mode, reason) in this process; fallback and disabled also warn."""
    if (status.mode, status.reason) in _ANNOUNCED:
        return status
    _ANNOUNCED.add((status.mode, status.reason))
    text = f"hokusai: {status.mode} mode — {status.reason}"
    if status.mode in (Mode.FALLBACK, Mode.DISABLED):
        log.warning(text)
        errors.warn_mode(text)
    else:
        log.info("%s (tracking URI %s)", text, status.tracking_uri)
    for note in status.warnings:
        log.warning("hokusai: %s", note)
    return status


# --- the manager for the mode -------------------------------------------------------------------


def experiment_manager(
    api_key: str | None = None,
    url: str | None = None,
    *,
    fallback: bool | None = None,
    mock: bool | None = None,
    optional: bool | None = None,
    ca_cert: str | os.PathLike[str] | None = None,
) -> BaseExperimentManager:
    """The experiment manager for the mode ``setup()`` chooses with these arguments: the mock
    when ``HOKUSAI_MOCK_MODE`` (or ``mock``) is set, the no-op one when disabled, else MLflow's.

    Reuses the latest ``setup()`` when the settings are the same (no second connection check).
    """
    settings = Settings.resolve(
        api_key, url, fallback=fallback, mock=mock, optional=optional, ca_cert=ca_cert
    )
    if _LAST is not None and _LAST[0] == settings:
        status = _LAST[1]
    else:
        status = connect(settings, RequestsTransport())
    return manager_for(status, settings)


def manager_for(status: Status, settings: Settings) -> BaseExperimentManager:
    from hokusai.mlflow_manager import ExperimentManager
    from hokusai.mock import MockExperimentManager

    if status.mode is Mode.MOCK:
        return MockExperimentManager()
    if status.mode is Mode.DISABLED:
        return DisabledExperimentManager(status.reason)
    parsed = settings.parsed_key
    context = errors.Context(
        settings.url, settings.names, settings.key_label, parsed.env if parsed else None
    )
    return ExperimentManager(
        status.tracking_uri,
        context=context,
        ca_cert=settings.ca_cert,
        optional=status.mode is Mode.REMOTE and settings.optional,
    )
