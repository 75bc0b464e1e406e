"""What each reason code means to the person at the keyboard: one table, reason → what to do.

The gateway names every denial by a reason code (the ``error`` field of its one JSON body; the
server's ``Reason`` enum, ``mlflow_unavailable`` and ``keys_api_unavailable`` included: Envoy's own
503s name the service that is down); Envoy adds ``not_found`` and ``request_too_large``. The
client adds three codes of its own for failures no gateway could answer: ``configuration`` (a
setting is wrong: nothing was sent), ``unreachable`` (no connection) and ``tls`` (the certificate
is not trusted).

Each row gives the HTTP status, the error class the client raises (by name; see ``errors``), a
one-line summary for bodies without a message, the troubleshooting steps and the documentation
page. The steps are templates: ``{key}`` is the key's display prefix (never the key), ``{env}``
its environment, ``{key_var}``/``{url_var}``/``{ca_var}`` the variables the user set. A test keeps
this table covering every reason of the server's enum; the doctor's advice and every typed
error's steps come from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from hokusai import variables

Kind = Literal[
    "configuration", "authentication", "permission", "rate_limited", "gateway", "mlflow", "other"
]
ERRORS_PAGE = "errors"  # the gateway's error reference (docs/errors.md), one anchor per code
CLIENT_PAGE = "python-client"  # this client's guide (docs/python-client.md)


@dataclass(frozen=True, slots=True)
class Entry:
    status: int | None
    kind: Kind
    summary: str
    steps: tuple[str, ...]
    page: str = ERRORS_PAGE


@dataclass(frozen=True, slots=True)
class Names:
    """The variables (or flags) a user set, so the steps can name them."""

    key: str = variables.API_KEY
    url: str = variables.GATEWAY_URL
    ca: str = variables.CA_CERT


DEFAULT_NAMES = Names()
COPY_AGAIN = (
    "Copy the key again exactly as it was shown when it was created or rotated "
    "(70 characters, hk_live_… or hk_test_…)."
)
DOCTOR = "Run `hokusai-doctor` for a step-by-step diagnosis of the connection."

TABLE: dict[str, Entry] = {
    "allowed": Entry(200, "other", "The key is valid.", ("Nothing to do.",)),
    "missing_key": Entry(
        401,
        "authentication",
        "No API key reached the gateway.",
        (
            "Set {key_var} to your key.",
            "A proxy between you and the gateway may strip the Authorization header: ask its "
            "administrator.",
        ),
    ),
    "multiple_credentials": Entry(
        401,
        "authentication",
        "More than one credential was sent.",
        ("Send one key only: drop any X-API-Key header or ?api_key= parameter your code adds.",),
    ),
    "malformed_key": Entry(
        401, "authentication", "The API key is malformed or mistyped.", (COPY_AGAIN,)
    ),
    "wrong_environment": Entry(
        401,
        "authentication",
        "This gateway does not accept keys of that environment.",
        (
            "This gateway does not accept {env} keys: use a key of the gateway's environment "
            "(hk_live_ in production).",
        ),
    ),
    "unknown_key": Entry(
        401,
        "authentication",
        "The API key is not known to this gateway.",
        (
            "Check that {url_var} points at the gateway that issued {key}.",
            "Otherwise ask an administrator for a new key.",
        ),
    ),
    "invalid_secret": Entry(
        401,
        "authentication",
        "The API key's secret part does not match.",
        (
            "The secret part of {key} does not match: it was mistyped, or you have an old copy — "
            "use the newest key.",
        ),
    ),
    "revoked": Entry(
        401,
        "authentication",
        "The API key has been revoked.",
        (
            "{key} has been revoked: ask its owner or an administrator for a new key (`hokusai "
            "auth show-key {key}` shows why it was revoked).",
        ),
    ),
    "expired": Entry(
        401,
        "authentication",
        "The API key has expired.",
        (
            "{key} has expired: rotate it (`hokusai auth rotate-key {key}`) or ask for a new one.",
            "Set {key_var} to the new key.",
        ),
    ),
    "inactive": Entry(
        401,
        "authentication",
        "The API key was unused for longer than the gateway's inactivity limit.",
        (
            "{key} was unused for longer than the gateway's inactivity limit (`hokusai policy "
            "show`) and no longer works: ask for a new key.",
            "Set {key_var} to the new key.",
        ),
    ),
    "ip_not_allowed": Entry(
        403,
        "permission",
        "The API key may not be used from this address.",
        (
            "Your address is not in the allowlist of {key}: use it from an allowed network, or ask "
            "an administrator to add your address (`hokusai auth update-key {key} --allow-ip "
            "<your address>/32`).",
        ),
    ),
    "insufficient_scope": Entry(
        403,
        "permission",
        "The API key lacks the scope this request needs.",
        (
            "{key} lacks the scope for this request: logging runs needs mlflow:write (`hokusai "
            "auth update-key {key} --scopes mlflow:read,mlflow:write`).",
        ),
    ),
    "rate_limited": Entry(
        429,
        "rate_limited",
        "Too many requests for this API key.",
        (
            "Too many requests with {key}: wait as long as the error's retry_after says, then "
            "retry.",
            "Log metrics in batches (log_metrics) rather than one call per value.",
            "If the limit is too low for your work, ask an administrator for a higher one.",
        ),
    ),
    "unavailable": Entry(
        503,
        "gateway",
        "The gateway could not verify the key right now.",
        (
            "The gateway could not verify keys just now (its database or cache is down): retry "
            "shortly.",
            "If it persists, tell the gateway's operator.",
        ),
    ),
    "mlflow_unavailable": Entry(
        503,
        "mlflow",
        "The MLflow server behind the gateway does not answer.",
        (
            "Your key is fine: MLflow behind the gateway does not answer; retry shortly, and if it "
            "persists tell the gateway's operator (local stack: `hokusai gateway status`).",
            "To keep working meanwhile, enable the local fallback (HOKUSAI_MLFLOW_FALLBACK=true): "
            "runs then stay on this machine until you copy them.",
        ),
    ),
    "keys_api_unavailable": Entry(
        503,
        "gateway",
        "The gateway's keys API does not answer.",
        (
            "Your key is fine: the gateway's keys API is down; retry shortly.",
            "If it persists, tell the gateway's operator (local stack: `hokusai gateway status`).",
        ),
    ),
    # --- browser sessions (the MLflow UI signed in at /login): a program that sends its key
    # never gets these; a browser signs in again.
    "invalid_session": Entry(
        401,
        "authentication",
        "The browser session is not valid.",
        ("Sign in again at /login (the browser's session is unknown).",),
    ),
    "session_expired": Entry(
        401,
        "authentication",
        "The browser session has ended.",
        ("Sign in again at /login (the browser's session has ended).",),
    ),
    "user_disabled": Entry(
        401,
        "authentication",
        "The key's user has been disabled.",
        (
            "The owner of {key} has been disabled: ask an administrator (`hokusai auth "
            "enable-user`) or use a key of another user.",
        ),
    ),
    "cross_site_request": Entry(
        403,
        "permission",
        "A change with a browser session came from another site.",
        (
            "A page on another site tried to change something with your browser session: use "
            "the gateway's own pages.",
        ),
    ),
    "not_found": Entry(
        404,
        "configuration",
        "No route for this path on the gateway.",
        ("Check {url_var}: it is the gateway's base URL, like https://gateway.example.com.",),
    ),
    "request_too_large": Entry(
        431,
        "other",
        "The request headers are too large.",
        ("Remove large custom headers or cookies from the request.",),
    ),
    # --- the client's own codes: a setting, or no gateway answered -----------------------------
    "configuration": Entry(
        None,
        "configuration",
        "A setting is missing or malformed.",
        ("Fix the setting the message names; nothing was sent anywhere.",),
        CLIENT_PAGE,
    ),
    "unreachable": Entry(
        None,
        "gateway",
        "The gateway cannot be reached.",
        (
            "Check the host name and port in {url_var}.",
            "Check that the gateway is running (local stack: `hokusai gateway status`) and that no "
            "firewall, proxy or VPN blocks the port.",
            DOCTOR,
        ),
        CLIENT_PAGE,
    ),
    "tls": Entry(
        None,
        "gateway",
        "The gateway's TLS certificate could not be verified.",
        (
            "Set {ca_var} to the gateway's CA certificate (PEM): for the local stack `hokusai "
            "gateway env` prints it; otherwise ask the gateway's operator.",
            "REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE do not matter here: the client always verifies "
            "with {ca_var} when it is set.",
            DOCTOR,
        ),
        CLIENT_PAGE,
    ),
}
UNEXPECTED = Entry(
    None,
    "other",
    "The gateway answered unexpectedly.",
    ("The gateway's answer was unexpected: check {url_var}, then tell its operator.", DOCTOR),
    CLIENT_PAGE,
)
CLIENT_CODES = frozenset({"configuration", "unreachable", "tls"})


def entry(code: str | None) -> Entry:
    return TABLE.get(code or "", UNEXPECTED)


def anchor(code: str) -> str:
    """The documentation anchor of a code, as the gateway writes it (``ip_not_allowed`` →
    ``ip-not-allowed``)."""
    return code.replace("_", "-")


def docs_url(gateway: str | None, code: str | None, given: str | None = None) -> str | None:
    """The absolute documentation link: the body's own ``docs`` path when it sent one, else the
    table's page and anchor, on the gateway that answered."""
    if gateway is None:
        return None
    base = gateway.rstrip("/")
    if given and given.startswith("/") and not given.startswith("//"):
        return base + given
    if code is None:
        return f"{base}/docs/{UNEXPECTED.page}#unexpected"
    return f"{base}/docs/{entry(code).page}#{anchor(code)}"


def steps(
    code: str | None, names: Names, key: str = "your key", env: str = "this"
) -> tuple[str, ...]:
    """The troubleshooting steps for ``code``, filled in; ``key`` is a display prefix."""
    values: Mapping[str, str] = {
        "key": key,
        "env": env,
        "key_var": names.key,
        "url_var": names.url,
        "ca_var": names.ca,
    }
    return tuple(step.format_map(values) for step in entry(code).steps)
