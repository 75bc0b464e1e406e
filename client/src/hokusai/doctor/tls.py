"""Check 4: the TLS handshake as the client makes it, and what the certificate says.

A trusted certificate is described from what ``ssl`` reports; describing one that is *not*
trusted needs to parse it, which uses the ``cryptography`` package when it is installed (it is
optional: the client depends on requests only) and says less without it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import ssl
from typing import Any

from hokusai.doctor.network import Endpoint
from hokusai.doctor.results import Result, fail, ok
from hokusai.doctor.target import Target, insecure_flag

Certificate = dict[str, Any]  # ssl.SSLSocket.getpeercert()'s shape
EXPIRED_CODES = {9: "is not valid yet (check this machine's clock)", 10: "has expired"}
HOSTNAME_CODES = {62, 64}  # OpenSSL: host name or IP address mismatch


def ca_hint(target: Target) -> str:
    return (
        f"set {target.names.ca} to the gateway's CA certificate (PEM): for the local stack "
        "`hokusai gateway env` prints it; otherwise ask the gateway's operator"
    )


def trust_context(ca: str | None) -> ssl.SSLContext:
    """What the client (and MLflow) trusts: the CA file when given, else the system store."""
    return ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()


def insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _handshake(
    endpoint: Endpoint, context: ssl.SSLContext, timeout: float
) -> tuple[str, Certificate, bytes | None]:
    with (
        socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=endpoint.host) as tls,
    ):
        return str(tls.version()), dict(tls.getpeercert() or {}), tls.getpeercert(True)


def describe(cert: Certificate) -> str:
    """Names, issuer and expiry of a verified certificate (``getpeercert()``)."""
    names = [
        value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "IP Address")
    ]
    issuer = next((v for rdn in cert.get("issuer", ()) for k, v in rdn if k == "commonName"), "?")
    until = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), dt.UTC)
    left = (until - dt.datetime.now(dt.UTC)).days
    soon = f", EXPIRES IN {left} DAYS" if 0 <= left < 14 else ""
    return (
        f"certificate for {', '.join(names[:4]) or '?'} issued by '{issuer}', valid until "
        f"{until:%Y-%m-%d}{soon}"
    )


def describe_der(der: bytes) -> str | None:
    """The same for a certificate ``ssl`` would not verify (needs ``cryptography``)."""
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID
    except ImportError:
        return None
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)] + [
            str(a) for a in san.get_values_for_type(x509.IPAddress)
        ]
    except x509.ExtensionNotFound:
        names = [cert.subject.rfc4514_string()]
    common = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    issuer = str(common[0].value) if common else cert.issuer.rfc4514_string()
    return (
        f"certificate for {', '.join(names[:4])} issued by '{issuer}', valid until "
        f"{cert.not_valid_after_utc:%Y-%m-%d}"
    )


def _settings_problem(target: Target) -> tuple[Result | None, bool]:
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
            f"MLFLOW_TRACKING_INSECURE_TLS and {target.names.ca} are both set: MLflow refuses that",
            f"unset MLFLOW_TRACKING_INSECURE_TLS and keep {target.names.ca}",
        ), False
    if target.ca and not os.path.isfile(target.ca):
        return fail("tls", f"the CA file {target.ca} does not exist", ca_hint(target)), False
    return None, insecure


def _untrusted(endpoint: Endpoint, target: Target, exc: ssl.SSLCertVerificationError) -> Result:
    shown = None
    with contextlib.suppress(OSError, ValueError):  # only to describe what was presented
        der = _handshake(endpoint, insecure_context(), target.timeout)[2]
        shown = describe_der(der) if der else None
    seen = f": {shown}" if shown else ""
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
            f"use a host name the certificate names in {target.names.url}, or have the "
            "operator reissue the certificate for this name",
        )
    where = f"the CA file {target.ca}" if target.ca else "the system's trusted CAs"
    return fail(
        "tls", f"certificate not trusted by {where} ({exc.verify_message}){seen}", ca_hint(target)
    )


def check_tls(endpoint: Endpoint, target: Target) -> tuple[Result, ssl.SSLContext | None]:
    """The handshake; returns the context later HTTPS checks should use (None: stop)."""
    problem, insecure = _settings_problem(target)
    if problem is not None:
        return problem, None
    try:
        context = trust_context(target.ca)
    except (ssl.SSLError, OSError) as exc:
        return fail(
            "tls", f"the CA file {target.ca} is not a PEM certificate ({exc})", ca_hint(target)
        ), None
    try:
        version, cert, _der = _handshake(endpoint, context, target.timeout)
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
    trusted = f"CA file {target.ca}" if target.ca else "the system store"
    return ok("tls", f"{version}, {describe(cert)}, trusted via {trusted}"), context


def _handshake_failed(endpoint: Endpoint, target: Target, exc: ssl.SSLError) -> Result:
    reason = str(exc.reason or exc)
    if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE"):
        return fail(
            "tls",
            f"port {endpoint.port} does not speak TLS ({reason})",
            f"use the gateway's HTTPS port in {target.names.url} (the local stack prints "
            "it as `gateway:`)",
        )
    return fail(
        "tls",
        f"handshake failed ({reason})",
        "tell the gateway's operator; the server "
        "may require a TLS version or cipher this client does not offer",
    )
