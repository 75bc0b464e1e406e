"""Phases 1–5 of the check for a browser session (``checker.py`` runs them when no key is sent).

1. credential — on a browser route only (``routes.is_browser_route``), exactly one
   ``__Host-hokusai_session`` cookie (two → ``multiple_credentials``); no I/O.
2. format — 43 base64url characters, else ``invalid_session`` (no lookup); then the CSRF rule:
   a cookie-authenticated change (any method but GET/HEAD/OPTIONS) must be same-origin
   (``authz.sessions.browser.same_origin``), else ``cross_site_request`` — decided before any
   I/O, so a forged request costs nothing and changes nothing.
3. record — the SHA-256 of the id → the session record, through the same tiered lookup as keys
   (``authz.storage.lookup.RecordLookup``: in-process → Redis → Postgres, single flight,
   negative cache, stale window, ``NOTIFY hokusai_sessions``). Unknown → ``invalid_session``:
   an id the gateway did not issue is never accepted.
4. secret — finding the hash is the proof (a 256-bit random id).
5. status — signed out, past the absolute expiry, or idle past the idle timeout →
   ``session_expired``. Idle time is judged from the record's ``last_seen_at`` and this
   instance's own memory of the session in use (no I/O); a cached record that looks idle is
   re-read from Postgres before it is refused (another instance may have seen it in use), and
   one confirmed idle is kept as ended, so it costs one store read, not one per request.

The checker then reads the session's key record (kind ``key``) and runs phases 5–8 on it exactly
as for a key: its revocation, expiry, user, allowlist, scopes and rate limit are the session's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple, Protocol

from authz.check import routes
from authz.check.reasons import Reason
from authz.sessions import cookie
from authz.sessions.browser import SAFE_METHODS, BrowserSignals, same_origin
from authz.sessions.record import KIND_KEY, SessionRecord, SessionState
from authz.storage.lookup import Missing, RecordLookup


class SessionCredential(NamedTuple):
    id_hash: str


class SessionRefusal(NamedTuple):
    """Why a session does not work; ``key_id`` is its key's when the record was found (the
    authentication event names it)."""

    reason: Reason
    key_id: str | None = None


class Activity(Protocol):
    """Sessions seen in use by this instance (``authz.storage.lastused.LastUsedRecorder``,
    on the epoch clock): marked on every admission, written in batches."""

    def seen_id(self, record_id: str) -> None: ...

    def last(self, record_id: str) -> float | None: ...


def credential(
    method: str, path: str, browser: BrowserSignals
) -> SessionCredential | Reason | None:
    """Phases 1–2: the session the request presents; None when it presents none here."""
    if browser.cookie is None or not routes.is_browser_route(path):
        return None
    found = cookie.session_id(browser.cookie)
    if found is None:
        return None
    if found is cookie.CookieProblem.MULTIPLE:
        return Reason.MULTIPLE_CREDENTIALS
    if found is cookie.CookieProblem.MALFORMED:
        return Reason.INVALID_SESSION
    if method not in SAFE_METHODS and not same_origin(browser):
        return Reason.CROSS_SITE_REQUEST
    return SessionCredential(cookie.id_hash(found))


_UNAVAILABLE = SessionRefusal(Reason.UNAVAILABLE)
_UNKNOWN = SessionRefusal(Reason.INVALID_SESSION)


class SessionCheck:
    """Phases 3–5 of a session credential; ``activity`` remembers sessions seen in use."""

    def __init__(
        self,
        lookup: RecordLookup[SessionRecord],
        activity: Activity,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lookup, self.activity, self._clock = lookup, activity, clock

    def now(self, session: SessionCredential) -> SessionRecord | SessionRefusal | None:
        """The usable session or the reason it is not, without I/O; None when I/O must tell."""
        found = self.lookup.cached(session.id_hash)
        return None if found is None else self._judge(found)

    async def get(self, session: SessionCredential) -> SessionRecord | SessionRefusal:
        judged = self._judge(await self.lookup.get(session.id_hash))
        if judged is not None:
            return judged
        found = await self.lookup.reload(session.id_hash)
        judged = self._judge(found)
        if judged is not None:
            return judged
        assert isinstance(found, SessionRecord)
        self.lookup.remember(found.ended(self._clock()))
        return SessionRefusal(Reason.SESSION_EXPIRED, found.key_id)

    def _judge(self, found: SessionRecord | Missing) -> SessionRecord | SessionRefusal | None:
        """The usable session, why it is not, or None: it looks idle (re-read it)."""
        if found is Missing.UNAVAILABLE:
            return _UNAVAILABLE
        if found is Missing.UNKNOWN:
            return _UNKNOWN
        if found.kind != KIND_KEY:  # OIDC sessions: next round
            return SessionRefusal(Reason.INVALID_SESSION, found.key_id)
        state = found.state(self._clock(), self.activity.last(found.id_hash))
        if state is SessionState.ENDED:
            return SessionRefusal(Reason.SESSION_EXPIRED, found.key_id)
        return None if state is SessionState.IDLE else found

    def seen(self, session: SessionRecord) -> None:
        self.activity.seen_id(session.id_hash)
