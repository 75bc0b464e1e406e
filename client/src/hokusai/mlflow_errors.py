"""MLflow's exceptions, read back into the client's typed errors.

What MLflow raises when the gateway (not MLflow) answered:

* a denial (401/403, and 429/503 with retries exhausted when MLflow got the body) arrives as
  ``RestException`` whose ``json`` is the gateway's body: ``{"error": <reason>, "message", "docs"}``
  — the reason decides, exactly as for the client's own calls;
* retries exhausted on a status MLflow retries (429, 5xx) arrive as ``MlflowException`` wrapping
  requests' ``RetryError`` wrapping urllib3's ``MaxRetryError(ResponseError("too many 503 error
  responses"))`` — only the status survives, so it decides (429 → rate limited, 502/504 →
  MLflow; 503 → the caller's probe tells the gateway from MLflow);
* no connection or a TLS failure: ``MlflowException`` wrapping requests' ``ConnectionError`` /
  ``SSLError``.

Anything else is MLflow's own business (a missing experiment, a bad parameter) and is left alone.
The exception chain is walked (``__cause__``, ``__context__``), never the message text — except
urllib3's ``ResponseError`` text, whose format (``ResponseError.SPECIFIC_ERROR``) is the only
place the status is kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import requests

from hokusai import errors, reasons
from hokusai.redact import Scrubber

TOO_MANY = re.compile(r"too many (\d{3}) error responses")
Probe = Callable[[], bool]  # True when MLflow behind the gateway answers its health check


def chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and every cause/context behind it (cycle-safe, bounded)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 20:
        seen.add(id(current))
        yield current
        for inner in current.args:
            if isinstance(inner, BaseException) and id(inner) not in seen:
                yield from chain(inner)
        current = current.__cause__ or current.__context__


def translate(
    exc: BaseException, context: errors.Context, mlflow_up: Probe | None = None
) -> errors.HokusaiError | None:
    """The typed error ``exc`` means, or None when it is not about the gateway."""
    scrub = Scrubber()
    for inner in chain(exc):
        body = getattr(inner, "json", None)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return _denial(body, context)
        status = _exhausted_status(inner)
        if status is not None:
            return _exhausted(status, context, mlflow_up)
        if isinstance(inner, requests.exceptions.SSLError):
            return errors.build(
                "tls",
                context,
                message=(f"TLS with {context.gateway} failed: {scrub(str(inner))[:300]}"),
            )
        if isinstance(inner, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return errors.build(
                "unreachable",
                context,
                message=(f"cannot reach {context.gateway}: {scrub(str(inner))[:300]}"),
            )
    return None


def _denial(body: dict[str, object], context: errors.Context) -> errors.HokusaiError:
    """MLflow keeps the body but not the status: the reason's own status stands in."""
    status = reasons.entry(str(body["error"])).status
    return errors.from_denial(status or 400, body, context)


def _exhausted_status(exc: BaseException) -> int | None:
    reason = getattr(exc, "reason", None)
    text = str(reason) if reason is not None else ""
    match = TOO_MANY.search(text)
    return int(match[1]) if match else None


def _exhausted(
    status: int, context: errors.Context, mlflow_up: Probe | None
) -> errors.HokusaiError:
    note = f"HTTP {status} after MLflow's retries"
    if status == 429:
        return errors.build(
            "rate_limited",
            context,
            status=429,
            message=(f"Too many requests for this API key: {note}."),
        )
    if status == 503 and (mlflow_up is None or mlflow_up()):
        return errors.build(
            "unavailable",
            context,
            status=503,
            message=(f"The gateway could not verify the key: {note}."),
        )
    return errors.build(
        "mlflow_unavailable",
        context,
        status=status,
        message=(f"MLflow behind the gateway does not answer: {note}."),
    )
