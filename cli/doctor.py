"""``hokusai doctor``: why can't my MLflow client reach the gateway? One small check per step.

The checks run in the order a request travels — URL, DNS, TCP, TLS, the gateway's health, MLflow
behind it, the key offline (format and checksum), the key at the gateway, its scopes — and stop
where a later check cannot run. Each returns a ``Result``; every failure carries what to do.

The key is never printed: only its display prefix ``hk_<env>_<id>``. Every detail and advice line
also passes through ``Scrubber`` before it is shown, because exception texts may embed URLs or
headers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import re
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

from authz.check.reasons import Reason
from authz.keys import format as key_format
from authz.transports import wire

Status = Literal["ok", "FAIL", "skip"]
MLFLOW_SUFFIX = wire.MLFLOW_PREFIX.rstrip("/")  # "/api/mlflow"
SEARCH_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"
WHOAMI_PATH = "/api/v1/auth/whoami"
WRITE_SCOPES = frozenset({"mlflow:write", "admin"})
MAX_BODY = 64 * 1024  # a health or error body is small; never read an unbounded answer
CA_HINT = (
    "set MLFLOW_TRACKING_SERVER_CERT_PATH to the gateway's CA certificate (PEM): for the "
    "local stack `hokusai gateway env` prints it; otherwise ask the gateway's operator"
)


@dataclass(frozen=True, slots=True)
class Result:
    check: str
    status: Status
    detail: str
    advice: str = ""


def ok(check: str, detail: str) -> Result:
    return Result(check, "ok", detail)


def fail(check: str, detail: str, advice: str) -> Result:
    return Result(check, "FAIL", detail, advice)


def skip(check: str, detail: str) -> Result:
    return Result(check, "skip", detail)


# --- what the MLflow client would use -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """The client configuration under test (flags, else the MLflow environment variables)."""

    url: str | None
    key: str | None = field(repr=False)
    ca: str | None = None
    insecure: str | None = None  # MLFLOW_TRACKING_INSECURE_TLS as written (MLflow parses it)
    basic_auth: bool = False  # MLflow sends username/password instead of the token when set
    timeout: float = 5.0


def mlflow_env(environ: Mapping[str, str] | None = None) -> Target:
    """The MLFLOW_* variables the MLflow client reads (only MLFLOW_*: HOKUSAI_* go via settings)."""
    env = os.environ if environ is None else environ
    return Target(
        url=env.get("MLFLOW_TRACKING_URI") or None,
        key=env.get("MLFLOW_TRACKING_TOKEN") or None,
        ca=env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None,
        insecure=env.get("MLFLOW_TRACKING_INSECURE_TLS") or None,
        basic_auth=bool(
            env.get("MLFLOW_TRACKING_USERNAME") and env.get("MLFLOW_TRACKING_PASSWORD")
        ),
    )


def insecure_flag(value: str | None) -> bool | None:
    """MLflow's own boolean parsing; None when MLflow would reject the value."""
    if value is None:
        return False
    lowered = value.lower()
    return lowered in ("true", "1") if lowered in ("true", "false", "1", "0") else None


class Scrubber:
    """Removes the key (whole, or any key-shaped text), URL passwords and query strings."""

    URL_USERINFO = re.compile(r"(\w+://)[^/\s@]+@")
    QUERY_SECRET = re.compile(r"([?&](?:api_key|token|access_token)=)[^&\s'\"]*", re.IGNORECASE)
    KEY_SHAPED = re.compile(r"\b(hk_(?:live|test)_[0-9A-Za-z]{12})_[0-9A-Za-z]*")

    def __init__(self, key: str | None) -> None:
        # Very short "keys" would mangle every line; they are never echoed in the first place.
        self.secrets = [s for s in {key or "", (key or "").strip()} if len(s) >= 8]

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = self.KEY_SHAPED.sub(r"\1_***", text)
        text = self.URL_USERINFO.sub(r"\1***@", text)
        return self.QUERY_SECRET.sub(r"\1***", text)

    def result(self, result: Result) -> Result:
        return replace(result, detail=self(result.detail), advice=self(result.advice))


# --- 1. the URL -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    gateway: str  # scheme, host, port and any path prefix before /api/mlflow (no trailing /)

    @property
    def tracking_path(self) -> str:
        return urlsplit(self.gateway).path + MLFLOW_SUFFIX

    def path(self, suffix: str) -> str:
        return urlsplit(self.gateway).path + suffix


def _display_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}{parts.path}"


def _tracking_path(path: str) -> str:
    return path if path.endswith(MLFLOW_SUFFIX) else MLFLOW_SUFFIX


def check_url(url: str | None) -> tuple[Result, Endpoint | None]:
    if not url:
        return fail(
            "url",
            "no tracking URI: MLFLOW_TRACKING_URI is not set and no --url given",
            "export MLFLOW_TRACKING_URI=https://<gateway host>:<port>/api/mlflow",
        ), None
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    shown = _display_url(url.strip())
    try:
        port = parts.port or 443
    except ValueError:
        return fail(
            "url",
            f"{shown}: the port is not a number",
            "write the URI as https://<host>:<port>/api/mlflow",
        ), None
    netloc = parts.netloc.rsplit("@", 1)[-1] or "<gateway host>"
    if parts.scheme != "https" or not parts.hostname:
        wanted = f"{parts.hostname}:<https port>" if parts.hostname and parts.port else netloc
        return fail(
            "url",
            f"{shown}: the gateway is reached over https only",
            f"set MLFLOW_TRACKING_URI=https://{wanted}{_tracking_path(path)} (the HTTPS "
            "port; the plain-HTTP one only redirects, which MLflow's POSTs do not follow)",
        ), None
    if not path.endswith(MLFLOW_SUFFIX):
        return fail(
            "url",
            f"{shown}: the path does not end with {MLFLOW_SUFFIX}",
            f"set MLFLOW_TRACKING_URI=https://{netloc}{MLFLOW_SUFFIX} (MLflow is served "
            f"under {MLFLOW_SUFFIX} on the gateway)",
        ), None
    gateway = f"https://{netloc}{path[: -len(MLFLOW_SUFFIX)]}"
    return ok("url", shown), Endpoint(parts.hostname, port, gateway)


# --- 2. DNS, 3. TCP -------------------------------------------------------------------------


def check_dns(endpoint: Endpoint) -> tuple[Result, list[str] | None]:
    try:
        infos = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return fail(
            "dns",
            f"{endpoint.host} does not resolve ({exc})",
            "check the host name in the URI for typos; if the gateway is on a private "
            "network, connect to its VPN (or add it to /etc/hosts)",
        ), None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return ok("dns", f"{endpoint.host} → {', '.join(addresses)}"), addresses


def check_tcp(endpoint: Endpoint, addresses: list[str], timeout: float) -> Result:
    errors = []
    for address in addresses:
        try:
            with socket.create_connection((address, endpoint.port), timeout=timeout):
                return ok("tcp", f"connected to {address} port {endpoint.port}")
        except OSError as exc:
            errors.append(f"{address}: {exc.strerror or exc}")
    refused = all("refused" in e.lower() for e in errors)
    advice = (
        "nothing listens there: check the port in the URI and that the gateway is running "
        "(local stack: `hokusai gateway status`, start it with `hokusai gateway up`)"
        if refused
        else "a firewall, proxy or VPN may block the port; check the port, "
        "and try from the gateway's own network"
    )
    return fail("tcp", f"cannot connect to port {endpoint.port} ({'; '.join(errors)})", advice)


# --- 4. TLS ---------------------------------------------------------------------------------


def _tls_settings(target: Target) -> tuple[Result | None, bool]:
    """A setting MLflow itself would refuse (as a failure), else whether TLS checks are off."""
    insecure = insecure_flag(target.insecure)
    if insecure is None:
        return fail(
            "tls",
            "MLFLOW_TRACKING_INSECURE_TLS must be true, false, 1 or 0",
            "unset MLFLOW_TRACKING_INSECURE_TLS",
        ), False
    if insecure and target.ca:
        return fail(
            "tls",
            "MLFLOW_TRACKING_INSECURE_TLS and MLFLOW_TRACKING_SERVER_CERT_PATH are"
            " both set: MLflow refuses that",
            "unset MLFLOW_TRACKING_INSECURE_TLS and keep MLFLOW_TRACKING_SERVER_CERT_PATH",
        ), False
    if target.ca and not os.path.isfile(target.ca):
        return fail("tls", f"the CA file {target.ca} does not exist", CA_HINT), False
    return None, insecure


def trust_context(ca: str | None) -> ssl.SSLContext:
    """What requests (and so MLflow) trusts: the CA file when given, else the system store."""
    return ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()


def insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _handshake(
    endpoint: Endpoint, context: ssl.SSLContext, timeout: float
) -> tuple[str, x509.Certificate | None]:
    with (
        socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=endpoint.host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        return str(tls.version()), x509.load_der_x509_certificate(der) if der else None


def _name_of(name: x509.Name) -> str:
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else name.rfc4514_string()


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [_name_of(cert.subject)]
    return [str(n) for n in san.get_values_for_type(x509.DNSName)] + [
        str(a) for a in san.get_values_for_type(x509.IPAddress)
    ]


def describe(cert: x509.Certificate) -> str:
    until = cert.not_valid_after_utc
    left = (until - dt.datetime.now(dt.UTC)).days
    soon = f", EXPIRES IN {left} DAYS" if 0 <= left < 14 else ""
    return (
        f"certificate for {', '.join(_names(cert)[:4])} issued by '{_name_of(cert.issuer)}', "
        f"valid until {until:%Y-%m-%d}{soon}"
    )


# OpenSSL verify codes: what each means for the person at the keyboard.
EXPIRED_CODES = {9: "is not valid yet (check this machine's clock)", 10: "has expired"}
HOSTNAME_CODES = {62, 64}


def _untrusted(endpoint: Endpoint, target: Target, exc: ssl.SSLCertVerificationError) -> Result:
    cert = None
    with contextlib.suppress(OSError, ValueError):  # only to describe what was presented
        cert = _handshake(endpoint, insecure_context(), target.timeout)[1]
    seen = f": {describe(cert)}" if cert is not None else ""
    code = exc.verify_code
    if code in EXPIRED_CODES:
        return fail(
            "tls",
            f"the gateway's certificate {EXPIRED_CODES[code]}{seen}",
            "the gateway's operator must renew its certificate"
            if code == 10
            else "set this machine's clock right (NTP)",
        )
    if code in HOSTNAME_CODES:
        return fail(
            "tls",
            f"the certificate does not name {endpoint.host}{seen}",
            "use a host name the certificate names in MLFLOW_TRACKING_URI, or have the "
            "operator reissue the certificate for this name",
        )
    where = f"the CA file {target.ca}" if target.ca else "the system's trusted CAs"
    return fail("tls", f"certificate not trusted by {where} ({exc.verify_message}){seen}", CA_HINT)


def check_tls(endpoint: Endpoint, target: Target) -> tuple[Result, ssl.SSLContext | None]:
    """The handshake as MLflow makes it; returns the context later HTTPS checks should use."""
    problem, insecure = _tls_settings(target)
    if problem is not None:
        return problem, None
    try:
        context = trust_context(target.ca)
    except (ssl.SSLError, OSError) as exc:
        return fail(
            "tls", f"the CA file {target.ca} is not a PEM certificate ({exc})", CA_HINT
        ), None
    try:
        version, cert = _handshake(endpoint, context, target.timeout)
    except ssl.SSLCertVerificationError as exc:
        untrusted = _untrusted(endpoint, target, exc)
        if not insecure:
            return untrusted, None
        return ok(
            "tls", f"NOT verified (MLFLOW_TRACKING_INSECURE_TLS is set): {untrusted.detail}"
        ), insecure_context()
    except ssl.SSLError as exc:
        return _handshake_failed(endpoint, target, exc), None
    except OSError as exc:
        return fail(
            "tls",
            f"handshake failed: {exc}",
            "retry; if it persists, the gateway's TLS listener is unhealthy: tell its operator",
        ), None
    detail = describe(cert) if cert is not None else "no certificate"
    trusted = f"CA file {target.ca}" if target.ca else "the system store"
    return ok("tls", f"{version}, {detail}, trusted via {trusted}"), context


def _handshake_failed(endpoint: Endpoint, target: Target, exc: ssl.SSLError) -> Result:
    reason = str(exc.reason or exc)
    if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE"):
        return fail(
            "tls",
            f"port {endpoint.port} does not speak TLS ({reason})",
            "use the gateway's HTTPS port in MLFLOW_TRACKING_URI (the local stack prints it"
            " as `gateway:`; `hokusai gateway env` shows the whole URI)",
        )
    return fail(
        "tls",
        f"handshake failed ({reason})",
        "tell the gateway's operator; the server "
        "may require a TLS version or cipher this client does not offer",
    )


# --- HTTP over the verified connection -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> dict[str, object]:
        try:
            value = json.loads(self.body)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class Connection:
    endpoint: Endpoint
    context: ssl.SSLContext
    timeout: float


Fetch = Callable[[Connection, str, Mapping[str, str]], Reply]


def https_get(conn: Connection, path: str, headers: Mapping[str, str]) -> Reply:
    """One GET; raises OSError or http.client.HTTPException on transport failures."""
    client = http.client.HTTPSConnection(
        conn.endpoint.host, conn.endpoint.port, context=conn.context, timeout=conn.timeout
    )
    try:
        client.request("GET", path, headers={"user-agent": "hokusai-doctor", **headers})
        response = client.getresponse()
        return Reply(response.status, response.read(MAX_BODY))
    finally:
        client.close()


def _get(
    fetch: Fetch, conn: Connection, path: str, headers: Mapping[str, str] | None = None
) -> Reply | str:
    """The reply, or one line saying why there is none."""
    try:
        return fetch(conn, path, headers or {})
    except (OSError, http.client.HTTPException) as exc:
        return f"no answer ({type(exc).__name__}: {exc})"


# --- 5. gateway health, 6. MLflow behind it ----------------------------------------------------


def check_gateway(conn: Connection, fetch: Fetch) -> Result:
    reply = _get(fetch, conn, conn.endpoint.path(wire.HEALTH_PATH))
    if isinstance(reply, str):
        return fail(
            "gateway",
            f"GET /health: {reply}",
            "retry; if it persists, tell the "
            "gateway's operator (local stack: `hokusai gateway status`)",
        )
    if reply.status == 200:
        return ok("gateway", "GET /health → 200")
    if reply.status == 404:
        return fail(
            "gateway",
            "GET /health → 404: this server is not a Hokusai gateway",
            "check the host and port in MLFLOW_TRACKING_URI",
        )
    return fail(
        "gateway",
        f"GET /health → {reply.status}: the gateway cannot check keys now",
        "its authz service is down: tell the gateway's operator (local stack: "
        "`hokusai gateway status` shows which part is down)",
    )


def check_mlflow(conn: Connection, fetch: Fetch) -> Result:
    reply = _get(fetch, conn, conn.endpoint.path(wire.MLFLOW_HEALTH_PATH))
    if isinstance(reply, str):
        return fail(
            "mlflow",
            f"GET {wire.MLFLOW_HEALTH_PATH}: {reply}",
            "retry; if it persists, tell the gateway's operator",
        )
    if reply.status == 200:
        return ok("mlflow", f"GET {wire.MLFLOW_HEALTH_PATH} → 200")
    if reply.json().get("error") == Reason.MLFLOW_UNAVAILABLE.value:
        return fail(
            "mlflow",
            f"GET {wire.MLFLOW_HEALTH_PATH} → {reply.status} {Reason.MLFLOW_UNAVAILABLE.value}: "
            "the gateway cannot reach MLflow",
            ADVICE[Reason.MLFLOW_UNAVAILABLE],
        )
    return fail(
        "mlflow",
        f"GET {wire.MLFLOW_HEALTH_PATH} → {reply.status}: the MLflow server "
        "behind the gateway does not answer",
        "MLflow is down or unreachable from the "
        "gateway: tell the gateway's operator (local stack: `hokusai gateway status`)",
    )


# --- 7. the key, offline --------------------------------------------------------------------

_PREFIX = re.compile(rf"hk_(live|test)_([0-9A-Za-z]{{{key_format.ID_LENGTH}}})_")
COPY_AGAIN = "copy the key again exactly as it was shown when it was created or rotated"


def _malformed(key: str) -> str:
    """Why ``key`` is not a key, without showing any of it beyond a public prefix."""
    if key != key.strip():
        return "it has leading or trailing whitespace (a newline from a file?)"
    if key.lower().startswith("bearer "):
        return "it includes 'Bearer ': MLflow adds that itself"
    if not key.startswith(("hk_live_", "hk_test_")):
        return "it does not start with hk_live_ or hk_test_"
    if len(key) != key_format.KEY_LENGTH:
        return f"it is {len(key)} characters long; a key has {key_format.KEY_LENGTH} (truncated?)"
    if not re.fullmatch(key_format.KEY_PATTERN, key):
        return "it contains characters other than letters, digits and _"
    return "its checksum does not match: a character was mistyped or changed"


def key_label(key: str) -> str:
    """The display prefix when the public part is intact, else nothing identifying."""
    match = _PREFIX.match(key.strip())
    return key_format.display_prefix(match[1], match[2]) if match else "the key"


def check_key(target: Target) -> tuple[Result, key_format.ParsedKey | None]:
    """Format and checksum with no I/O (authz.keys.parse): garbage never goes on the wire."""
    if target.basic_auth:
        return fail(
            "key",
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD are set: MLflow "
            "sends them instead of the key",
            "unset MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
        ), None
    if not target.key:
        return fail(
            "key",
            "no key: MLFLOW_TRACKING_TOKEN is not set and no --key given",
            "export MLFLOW_TRACKING_TOKEN=<your hk_live_… key> (ask an admin for one: "
            "`hokusai auth create-key`)",
        ), None
    parsed = key_format.parse(target.key)
    if parsed is None:
        return fail(
            "key", f"{key_label(target.key)} is malformed: {_malformed(target.key)}", COPY_AGAIN
        ), None
    return ok(
        "key", f"{parsed.display_prefix}: well-formed, checksum ok, environment {parsed.env}"
    ), parsed


# --- 8. the key at the gateway, 9. its scopes -----------------------------------------------

# One table: the gateway's denial code (authz.check.reasons.Reason) → what the key's user should do.
ADVICE: dict[Reason, str] = {
    Reason.ALLOWED: "nothing to do",
    Reason.MISSING_KEY: "no key reached the gateway: set MLFLOW_TRACKING_TOKEN to your key; a "
    "proxy between you and the gateway may strip the Authorization header",
    Reason.MULTIPLE_CREDENTIALS: "send one key only: drop any X-API-Key header or ?api_key= "
    "parameter when MLFLOW_TRACKING_TOKEN is set",
    Reason.MALFORMED_KEY: COPY_AGAIN,
    Reason.WRONG_ENVIRONMENT: "this gateway does not accept {env} keys: use a key of the "
    "gateway's environment (hk_live_ in production)",
    Reason.UNKNOWN_KEY: "this gateway does not know {key}: check MLFLOW_TRACKING_URI points at "
    "the gateway that issued it, or ask for a new key",
    Reason.INVALID_SECRET: "the secret part of {key} does not match: it was mistyped, or you have"
    " an old copy — use the newest key",
    Reason.REVOKED: "{key} has been revoked: ask its owner or an admin for a new key (`hokusai "
    "auth show-key {key}` shows why it was revoked)",
    Reason.EXPIRED: "{key} has expired: rotate it (`hokusai auth rotate-key {key}`) or ask for "
    "a new one, and set MLFLOW_TRACKING_TOKEN to the new key",
    Reason.IP_NOT_ALLOWED: "your address is not in the key's allowlist: use it from an allowed "
    "network, or ask an admin to add your address (`hokusai auth "
    "update-key {key} --allow-ip <your address>/32`)",
    Reason.INSUFFICIENT_SCOPE: "{key} lacks the scope for this request: logging runs needs "
    "mlflow:write (`hokusai auth update-key {key} --scopes "
    "mlflow:read,mlflow:write`)",
    Reason.RATE_LIMITED: "too many requests with {key}: wait (see Retry-After) or ask for a "
    "higher rate limit",
    Reason.UNAVAILABLE: "the gateway could not verify keys just now (its database or cache is "
    "down): retry shortly; if it persists, tell the gateway's operator",
    Reason.INACTIVE: "{key} was unused for longer than the gateway's inactivity limit "
    "(`hokusai policy show`): ask for a new key",
    Reason.MLFLOW_UNAVAILABLE: "your key is fine: the MLflow server behind the gateway is down "
    "or unreachable; retry shortly, and if it persists tell the gateway's operator (local "
    "stack: `hokusai gateway status`)",
    Reason.KEYS_API_UNAVAILABLE: "your key is fine: the gateway's keys API is down; retry "
    "shortly, and if it persists tell the gateway's operator",
}


def advice_for(code: str, key: key_format.ParsedKey) -> str:
    try:
        reason = Reason(code)
    except ValueError:
        return "unexpected answer from the gateway: tell its operator"
    return ADVICE[reason].format(key=key.display_prefix, env=key.env)


def check_access(conn: Connection, fetch: Fetch, key: key_format.ParsedKey, token: str) -> Result:
    reply = _get(
        fetch, conn, conn.endpoint.tracking_path + SEARCH_PATH, {"authorization": f"Bearer {token}"}
    )
    if isinstance(reply, str):
        return fail(
            "access",
            f"searching experiments: {reply}",
            "retry; if it persists, tell the gateway's operator",
        )
    if reply.status == 200:
        return ok("access", f"{key.display_prefix} accepted: experiments/search → 200")
    code = str(reply.json().get("error", ""))
    if code:
        return fail(
            "access",
            f"{key.display_prefix} refused: experiments/search → {reply.status} {code}",
            advice_for(code, key),
        )
    return fail(
        "access",
        f"experiments/search → {reply.status} without a gateway error code",
        "the gateway or MLflow answered unexpectedly: check the URI, then tell the "
        "gateway's operator",
    )


def _scopes(reply: Reply) -> list[str] | None:
    body = reply.json()
    nested = body.get("key")
    for holder in (body, nested if isinstance(nested, dict) else {}):
        scopes = holder.get("scopes")
        if isinstance(scopes, list) and all(isinstance(s, str) for s in scopes):
            return list(scopes)
    return None


def check_scopes(conn: Connection, fetch: Fetch, key: key_format.ParsedKey, token: str) -> Result:
    """Scopes from the keys API's whoami when it answers; otherwise read access is all we know."""
    reply = _get(fetch, conn, conn.endpoint.path(WHOAMI_PATH), {"authorization": f"Bearer {token}"})
    scopes = _scopes(reply) if isinstance(reply, Reply) and reply.status == 200 else None
    if scopes is None:
        return ok(
            "scopes",
            f"read access verified (write access not checked: the gateway has no {WHOAMI_PATH})",
        )
    listed = ", ".join(scopes) or "none"
    if WRITE_SCOPES & set(scopes):
        return ok("scopes", f"{listed}: can read and write")
    return ok("scopes", f"{listed}: read only — logging runs needs mlflow:write")


# --- the whole run --------------------------------------------------------------------------


def _network(
    target: Target, endpoint: Endpoint, fetch: Fetch, results: list[Result]
) -> Connection | None:
    """DNS, TCP, TLS, gateway and MLflow health; the verified connection when TLS worked."""
    dns, addresses = check_dns(endpoint)
    results.append(dns)
    if addresses is None:
        results.extend(skip(n, "needs DNS") for n in ("tcp", "tls", "gateway", "mlflow"))
        return None
    tcp = check_tcp(endpoint, addresses, target.timeout)
    results.append(tcp)
    if tcp.status != "ok":
        results.extend(skip(n, "needs a TCP connection") for n in ("tls", "gateway", "mlflow"))
        return None
    tls, context = check_tls(endpoint, target)
    results.append(tls)
    if context is None:
        results.extend(skip(n, "needs a trusted TLS connection") for n in ("gateway", "mlflow"))
        return None
    conn = Connection(endpoint, context, target.timeout)
    results += [check_gateway(conn, fetch), check_mlflow(conn, fetch)]
    return conn


def run(target: Target, fetch: Fetch | None = None) -> list[Result]:
    """Every check in order; each result already scrubbed of key material."""
    fetch = fetch or https_get  # looked up per run so a test can observe the calls
    url, endpoint = check_url(target.url)
    results = [url]
    conn = None
    if endpoint is None:
        results.extend(
            skip(n, "needs a usable URL") for n in ("dns", "tcp", "tls", "gateway", "mlflow")
        )
    else:
        conn = _network(target, endpoint, fetch, results)
    key, parsed = check_key(target)
    results.append(key)
    if parsed is None or conn is None or target.key is None:
        why = "needs a well-formed key" if parsed is None else "needs a connection"
        results += [skip("access", why), skip("scopes", why)]
    else:
        access = check_access(conn, fetch, parsed, target.key)
        results.append(access)
        results.append(
            check_scopes(conn, fetch, parsed, target.key)
            if access.status == "ok"
            else skip("scopes", "needs an accepted key")
        )
    scrub = Scrubber(target.key)
    return [scrub.result(r) for r in results]


def passed(results: list[Result]) -> bool:
    return all(r.status == "ok" for r in results)
