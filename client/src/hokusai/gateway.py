"""The client's own HTTPS calls to the gateway: one small transport seam, retries on top.

``Transport`` is the I/O seam: ``RequestsTransport`` is the real one; tests pass a fake with the
same method. A transport turns every failure to get an answer into ``Unreachable`` or
``Untrusted`` (TLS), so nothing above it knows about requests.

The CA is passed with every request (``verify=<path>``), never set on the session: requests lets
``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` — set on many machines behind corporate proxies —
override a session's ``verify``, but not a per-request one. MLflow passes it per request too.

``Gateway.get`` retries by ``hokusai.retry``'s policy and returns the last answer, whatever its
status; ``Gateway.error`` turns a non-2xx answer into the typed error.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import requests

from hokusai import errors
from hokusai.redact import Scrubber
from hokusai.retry import DEFAULT, RETRY_STATUSES, RetryPolicy, retry_after
from hokusai.settings import Settings

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024  # health, identity and error bodies are small; never read an unbounded one
USER_AGENT = "hokusai-client"
# The gateway's routes the client calls itself.
HEALTH = "/health"  # the gateway (its key checker), no key
MLFLOW_HEALTH = "/api/mlflow/health/mlflow"  # MLflow behind it, no key
WHOAMI = "/api/v1/auth/whoami"  # the key's identity and scopes
MLFLOW_PREFIX = "/api/mlflow"
SEARCH = MLFLOW_PREFIX + "/api/2.0/mlflow/experiments/search?max_results=1"  # a read, keyed


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names

    def json(self) -> dict[str, object]:
        try:
            value = json.loads(self.body)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def retry_after(self) -> float | None:
        return retry_after(self.headers.get("retry-after"))


class Unreachable(Exception):
    """No answer: DNS, refused or reset connection, time-out."""


class Untrusted(Exception):
    """The TLS handshake failed: certificate not trusted, wrong name, expired, not TLS."""


class Transport(Protocol):
    def get(
        self, url: str, headers: Mapping[str, str], verify: str | bool, timeout: tuple[float, float]
    ) -> Reply: ...


class RequestsTransport:
    """GET with requests; the CA travels with each request (see the module docstring)."""

    def __init__(self) -> None:
        self.session = requests.Session()

    def get(
        self, url: str, headers: Mapping[str, str], verify: str | bool, timeout: tuple[float, float]
    ) -> Reply:
        try:
            with self.session.get(
                url,
                headers={"user-agent": USER_AGENT, **headers},
                verify=verify,
                timeout=timeout,
                stream=True,
                allow_redirects=False,
            ) as response:
                body = response.raw.read(MAX_BODY, decode_content=True)
                names = {k.lower(): v for k, v in response.headers.items()}
                return Reply(response.status_code, body, names)
        except requests.exceptions.SSLError as exc:
            raise Untrusted(root_cause(exc)) from None
        except requests.exceptions.RequestException as exc:
            raise Unreachable(root_cause(exc)) from None


def root_cause(exc: BaseException) -> str:
    """The innermost cause, briefly: "connection refused", not urllib3's three nested reprs."""
    inner: BaseException = exc
    for _ in range(10):  # requests → urllib3 MaxRetryError → its reason → the OSError
        nested = (
            getattr(inner, "reason", None)
            or inner.__cause__
            or inner.__context__
            or (inner.args[0] if inner.args and isinstance(inner.args[0], BaseException) else None)
        )
        if not isinstance(nested, BaseException):
            break
        inner = nested
    if isinstance(inner, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(inner, TimeoutError) or "timed out" in str(inner).lower():
        return "timed out"
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror.lower()
    text = str(inner)
    return text.rsplit(": ", 1)[-1] if "Errno" in text else text


class Gateway:
    """The gateway at ``settings.url``: retried GETs and the errors its answers mean."""

    def __init__(
        self, settings: Settings, transport: Transport, policy: RetryPolicy = DEFAULT
    ) -> None:
        if settings.url is None:
            raise ValueError("a Gateway needs a URL")
        self.settings, self.transport, self.policy = settings, transport, policy
        self.scrub = Scrubber([settings.key])
        parsed = settings.parsed_key
        self.context = errors.Context(
            settings.url, settings.names, settings.key_label, parsed.env if parsed else None
        )

    def get(self, path: str, *, authenticated: bool = False) -> Reply:
        """The answer to ``GET path`` after at most ``policy.attempts`` tries within
        ``policy.budget`` seconds; raises ``GatewayUnavailableError`` if none answered."""
        headers = {"authorization": f"Bearer {self.settings.key}"} if authenticated else {}
        deadline = self.policy.clock() + self.policy.budget
        outcome: Reply | errors.HokusaiError = Reply(0)
        for attempt in range(1, self.policy.attempts + 1):
            outcome = self._try(path, headers, deadline)
            if isinstance(outcome, Reply) and outcome.status not in RETRY_STATUSES:
                return outcome
            if isinstance(outcome, errors.HokusaiError) and outcome.reason == "tls":
                raise outcome  # a certificate does not get better by asking again
            wait = self._wait(outcome, attempt)
            if attempt == self.policy.attempts:
                break
            if self.policy.clock() + wait > deadline:
                log.debug(
                    "GET %s: waiting %.2f s would exceed the %g s budget",
                    path,
                    wait,
                    self.policy.budget,
                )
                break
            log.debug(
                "GET %s: attempt %d of %d failed (%s); retrying in %.2f s",
                path,
                attempt,
                self.policy.attempts,
                _why(outcome),
                wait,
            )
            self.policy.sleep(wait)
        if isinstance(outcome, errors.HokusaiError):
            raise outcome
        return outcome

    def _try(
        self, path: str, headers: Mapping[str, str], deadline: float
    ) -> Reply | errors.HokusaiError:
        """One attempt: the answer, or the error that stands for no answer."""
        url = f"{self.context.gateway}{path}"
        timeout = self.policy.timeout(deadline - self.policy.clock())
        verify: str | bool = self.settings.ca_cert or True
        try:
            return self.transport.get(url, headers, verify, timeout)
        except Untrusted as exc:
            return self._unavailable("tls", f"TLS with {self.context.gateway} failed", exc)
        except Unreachable as exc:
            return self._unavailable("unreachable", f"cannot reach {self.context.gateway}", exc)

    def _wait(self, outcome: Reply | errors.HokusaiError, attempt: int) -> float:
        """The server's Retry-After when it sent one, else the jittered backoff."""
        if isinstance(outcome, Reply) and outcome.retry_after is not None:
            return outcome.retry_after
        return self.policy.backoff(attempt)

    def _unavailable(self, code: str, what: str, exc: Exception) -> errors.HokusaiError:
        detail = self.scrub(str(exc))[:300]
        return errors.build(code, self.context, message=f"{what}: {detail}")

    def error(self, reply: Reply) -> errors.HokusaiError:
        """The typed error a non-2xx answer means."""
        return errors.from_denial(reply.status, reply.json(), self.context, reply.retry_after)


def _why(failure: object) -> str:
    if isinstance(failure, Reply):
        return f"HTTP {failure.status}"
    return getattr(failure, "reason", None) or type(failure).__name__
