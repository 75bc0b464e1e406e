"""Every error the client raises, in one tree.

::

    HokusaiError                     anything this client raises on purpose
    ├── ConfigurationError           a missing or malformed setting (key, URL, CA file, flag);
    │                                raised before any network I/O, never triggers a fallback
    ├── AuthenticationError          401: the gateway refused the key (revoked, expired, unknown…)
    ├── PermissionDeniedError        403: the key is valid but may not do this (scope, IP)
    ├── RateLimitedError             429 after honouring Retry-After; ``retry_after`` says how long
    └── UnavailableError             the service is not there right now — the only errors that
        │                            fallback and optional mode act on
        ├── GatewayUnavailableError  no connection, TLS failure, or 503 ``unavailable``
        └── MLflowUnavailableError   the gateway answers but MLflow behind it does not
                                     (502/503/504 without a gateway reason, ``mlflow_unavailable``)

Every error carries ``reason`` (the gateway's code, or the client's ``unreachable``/``tls``),
``message`` (one line), ``steps`` (what to do, from ``hokusai.reasons``), ``docs_url`` (an absolute
link on the gateway) and ``status`` (the HTTP status, when there was one). ``str(error)`` shows all
of it. No error ever holds the key: at most its display prefix ``hk_<env>_<id>`` (``key``).

``TrackingModeWarning`` is the warning category of the fallback and disabled modes.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

from hokusai import reasons
from hokusai.reasons import Names


class TrackingModeWarning(UserWarning):
    """Tracking is not going to the gateway: fallback (local store) or disabled (no-ops)."""


def warn_mode(text: str) -> None:
    """``warnings.warn`` attributed to the user's line that called into this package."""
    level, frame = 2, sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("hokusai"):
        frame, level = frame.f_back, level + 1
    warnings.warn(text, TrackingModeWarning, stacklevel=level)


class HokusaiError(Exception):
    """The base of every error this client raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        steps: tuple[str, ...] = (),
        docs_url: str | None = None,
        status: int | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.reason, self.steps = message, reason, steps
        self.docs_url, self.status, self.key = docs_url, status, key

    def __str__(self) -> str:
        head = f"{self.message} [{self.reason}]" if self.reason else self.message
        lines = [head, *(f"  → {step}" for step in self.steps)]
        if self.docs_url:
            lines.append(f"  docs: {self.docs_url}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(reason={self.reason!r}, status={self.status!r}, "
            f"key={self.key!r}, message={self.message!r})"
        )


class ConfigurationError(HokusaiError):
    """A setting is missing or malformed; nothing was sent anywhere."""


class AuthenticationError(HokusaiError):
    """401: the gateway refused the key."""


class PermissionDeniedError(HokusaiError):
    """403: the key is valid but may not make this request."""


class RateLimitedError(HokusaiError):
    """429: too many requests with this key, even after waiting as the gateway asked."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, **details: object
    ) -> None:
        super().__init__(message, **details)  # type: ignore[arg-type]
        self.retry_after = retry_after

    def __str__(self) -> str:
        text = super().__str__()
        if self.retry_after is None:
            return text
        first, _, rest = text.partition("\n")
        joined = f"{first} (retry after {self.retry_after:g} s)"
        return f"{joined}\n{rest}" if rest else joined


class UnavailableError(HokusaiError):
    """The gateway or MLflow cannot serve right now (what fallback and optional act on)."""


class GatewayUnavailableError(UnavailableError):
    """The gateway cannot be reached, its certificate is not trusted, or it cannot check keys."""


class MLflowUnavailableError(UnavailableError):
    """The gateway answers, but the MLflow server behind it does not."""


KINDS: dict[reasons.Kind, type[HokusaiError]] = {
    "configuration": ConfigurationError,
    "authentication": AuthenticationError,
    "permission": PermissionDeniedError,
    "rate_limited": RateLimitedError,
    "gateway": GatewayUnavailableError,
    "mlflow": MLflowUnavailableError,
    "other": HokusaiError,
}


@dataclass(frozen=True, slots=True)
class Context:
    """What an error may say about where it happened: never the key, only its label."""

    gateway: str | None = None
    names: Names = field(default_factory=Names)
    key: str | None = None  # display prefix
    env: str | None = None


def build(
    code: str | None,
    context: Context,
    *,
    message: str | None = None,
    status: int | None = None,
    docs: str | None = None,
    retry_after: float | None = None,
    named: bool = True,
) -> HokusaiError:
    """The typed error for a reason code. ``named=False``: the table row gives the class and the
    steps, but the answer carried no reason, so ``reason`` stays None."""
    row = reasons.entry(code)
    details = {
        "reason": code if named else None,
        "status": status if status is not None else row.status,
        "steps": reasons.steps(
            code, context.names, context.key or "your key", context.env or "this"
        ),
        "docs_url": reasons.docs_url(context.gateway, code, docs),
        "key": context.key,
    }
    text = message or row.summary
    cls = KINDS[row.kind]
    if cls is RateLimitedError:
        return RateLimitedError(text, retry_after=retry_after, **details)
    return cls(text, **details)  # type: ignore[arg-type]


def from_denial(
    status: int, body: Mapping[str, object], context: Context, retry_after: float | None = None
) -> HokusaiError:
    """The typed error for a non-2xx answer whose JSON body is ``body`` (maybe empty).

    A gateway reason decides the class; without one the status does: 502/503/504 mean MLflow
    (the gateway itself always names its reason), 401/403/429 keep their meaning.
    """
    code = body.get("error") if isinstance(body.get("error"), str) else None
    message = body.get("message") if isinstance(body.get("message"), str) else None
    docs = body.get("docs") if isinstance(body.get("docs"), str) else None
    if code in reasons.TABLE:
        return build(
            str(code),
            context,
            message=str(message) if message else None,
            status=status,
            docs=str(docs) if docs else None,
            retry_after=retry_after,
        )
    by_status: dict[int, str] = {
        401: "missing_key",
        403: "insufficient_scope",
        429: "rate_limited",
        502: "mlflow_unavailable",
        503: "mlflow_unavailable",
        504: "mlflow_unavailable",
    }
    if status in by_status:
        return build(
            by_status[status],
            context,
            status=status,
            retry_after=retry_after,
            message=_unnamed(status, code),
            named=False,
        )
    return build(None, context, status=status, message=_unnamed(status, code))


def _unnamed(status: int, code: object) -> str:
    shown = f" ({code})" if isinstance(code, str) and code.isidentifier() else ""
    if status in (502, 503, 504):
        return (
            f"HTTP {status} without a gateway reason{shown}: the MLflow server behind the "
            "gateway does not answer."
        )
    return f"HTTP {status} without a gateway reason{shown}."
