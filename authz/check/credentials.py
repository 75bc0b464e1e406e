"""Phase 1 of the check: find exactly one credential in the request, with no I/O.

Sources, in the order a client is told to use them: ``Authorization: Bearer <key>`` (scheme
case-insensitive, exactly one space), the ``X-API-Key`` header, the ``api_key`` query parameter
(when enabled). Two sources — or one header sent twice — is ``multiple_credentials``: never
first-wins, because proxies and servers disagree about which one is "first".
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple
from urllib.parse import parse_qsl

from authz.check.reasons import Reason
from authz.keys.format import MAX_CREDENTIAL_LENGTH

_BEARER = "bearer "


class CredentialSources(NamedTuple):
    """What the transport found; each header value is None when absent.

    ``repeated`` is True when the transport saw a credential header more than once. A named
    tuple, not a frozen dataclass: built once per check, it costs 0.27 µs instead of 0.49 µs.
    """

    authorization: str | None
    api_key_header: str | None
    query: str
    repeated: bool = False


# CredentialSources from all four fields in order, built in C: the transports' one per request.
new_sources = partial(tuple.__new__, CredentialSources)


def _from_authorization(value: str) -> str | Reason:
    if "," in value:  # Envoy joins repeated headers with commas; keys never contain one
        return Reason.MULTIPLE_CREDENTIALS
    token = value[7:]
    if value[:7].lower() != _BEARER or token != token.strip() or " " in token or "\t" in token:
        bare = value.strip().lower()
        return Reason.MISSING_KEY if bare in ("", "bearer") else Reason.MALFORMED_KEY
    return token or Reason.MISSING_KEY


def _from_query(query: str) -> list[str]:
    if "api_key" not in query:
        return []
    return [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "api_key"]


def extract(sources: CredentialSources, query_enabled: bool) -> str | Reason:
    """The one credential string, or the reason the request has none usable."""
    if sources.repeated:
        return Reason.MULTIPLE_CREDENTIALS
    authorization, header, query, _ = sources
    credential: str | Reason
    if header is None and (not query_enabled or "api_key" not in query):
        # At most the Authorization header (the usual case): the same answer without a list.
        credential = (
            Reason.MISSING_KEY if authorization is None else _from_authorization(authorization)
        )
    else:
        found: list[str | Reason] = []
        if authorization is not None:
            found.append(_from_authorization(authorization))
        if header is not None:
            found.append(Reason.MULTIPLE_CREDENTIALS if "," in header else header)
        if query_enabled:
            found.extend(_from_query(query))
        if len(found) > 1:
            return Reason.MULTIPLE_CREDENTIALS
        if not found or found[0] == "":
            return Reason.MISSING_KEY
        credential = found[0]
    if isinstance(credential, str) and len(credential) > MAX_CREDENTIAL_LENGTH:
        return Reason.MALFORMED_KEY
    return credential
