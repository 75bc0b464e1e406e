"""The session cookie: its fixed name and attributes, reading it from a ``Cookie`` header, and
the id's one-way hash (the only form of the id that is ever stored, cached or logged).

``__Host-hokusai_session=<43 characters: secrets.token_urlsafe(32)>; Max-Age=<absolute timeout>;
Path=/; Secure; HttpOnly; SameSite=Lax`` — no ``Domain``: the ``__Host-`` prefix makes browsers
refuse the cookie unless it is Secure, host-only and for ``/``, so no sibling host can plant one.
``Lax`` (not ``Strict``) so that following MLflow's "View run" link from a chat or a terminal
still carries the session; cross-site writes are refused by the Check's same-origin rule anyway.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets

COOKIE_NAME = "__Host-hokusai_session"
ID_LENGTH = 43  # base64url of 32 random bytes, no padding: 256 bits
_ID = re.compile(r"[A-Za-z0-9_-]{43}")
_ATTRIBUTES = "Path=/; Secure; HttpOnly; SameSite=Lax"


class CookieProblem(enum.Enum):
    MULTIPLE = "multiple"  # two session cookies: never first-wins
    MALFORMED = "malformed"  # not 43 base64url characters: no lookup


def new_session_id() -> str:
    """A fresh, unguessable session id (one per sign-in: never reused, never chosen by a client)."""
    return secrets.token_urlsafe(32)


def id_hash(session_id: str) -> str:
    """SHA-256 of the id, hex: the key of the session everywhere (database, caches, NOTIFY).

    A leaked database row, Redis value or notification yields no usable cookie."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def session_id(cookie_header: str | None) -> str | CookieProblem | None:
    """The session id in a ``Cookie`` header; None when it carries no session cookie.

    Cookie pairs are split on ``;`` and on ``,`` (a proxy may join repeated headers with commas;
    neither can occur inside a cookie value, RFC 6265 §4.1.1)."""
    if not cookie_header or COOKIE_NAME not in cookie_header:
        return None
    found = [
        value.strip()
        for name, _, value in (
            pair.partition("=") for pair in re.split(r"[;,]", cookie_header) if "=" in pair
        )
        if name.strip() == COOKIE_NAME
    ]
    if not found:
        return None
    if len(found) > 1:
        return CookieProblem.MULTIPLE
    return found[0] if _ID.fullmatch(found[0]) else CookieProblem.MALFORMED


def set_cookie(session_id: str, max_age: int) -> str:
    """The ``Set-Cookie`` value that starts a session (lives at most ``max_age`` seconds)."""
    return f"{COOKIE_NAME}={session_id}; Max-Age={max(0, max_age)}; {_ATTRIBUTES}"


def clear_cookie() -> str:
    """The ``Set-Cookie`` value that removes the session cookie from the browser."""
    return f"{COOKIE_NAME}=; Max-Age=0; {_ATTRIBUTES}"
