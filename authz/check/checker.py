"""The check pipeline, shared by every transport (gRPC ext_authz, HTTP ext_authz, the REST API).

``Checker.check`` reads top to bottom as its phases; each returns the next value or a denial:

1. credential — exactly one, from the Authorization header, X-API-Key or ``api_key`` (no I/O).
   A key that is sent always decides (a browser cookie beside it is ignored, a bad key is
   refused even with a good session); only a request with no key at all may present a browser
   session instead, on a browser route (``sessions.py`` runs phases 1–5 for it).
2. format     — shape and CRC32 checksum, then the environment this gateway accepts (no I/O)
3. record     — in-process cache → Redis → Postgres (``authz/storage/lookup.py``)
4. secret     — fingerprint compare, or one bcrypt the first time (``verify.py``)
5. status     — revoked? expired? (checked on every request: expiry fires no notification);
   then the central key policy (``authz/keys/policy.py``): past the key's maximum lifetime
   (``expired``) or unused for longer than the inactivity expiry (``inactive``)
6. network    — the client address Envoy determined, against the key's allowlist
7. scope      — the route and method's scope (``routes.py``; GraphQL by its operations,
   ``graphql.py``)
8. rate limit — only with ``HOKUSAI_RATE_LIMIT_ENFORCEMENT=check`` (``limits`` given): the key's
   limit, decided by the limiter (``authz/ratelimit/``); a denial is ``rate_limited`` (429).
   Otherwise Envoy's global ratelimit filter does this after the Check, through
   ``authz/transports/ratelimit_service.py``.

A denial is a returned ``Decision``, never an exception; every denial with a key id — a key's,
or a browser session's key — is reported to ``on_denied`` (authentication events,
``authz/events/recorder.py``: an append, no I/O). ``check_safely`` turns an unexpected exception
into an ``unavailable`` denial (fail closed) for every caller. A 401 for a browser's page load (a
request without a key whose ``Sec-Fetch-*`` headers say it is a navigation to a page of MLflow's
UI) carries ``location``: the sign-in page with the way back
(``authz.sessions.browser.signin_location``); the transports answer it with a 302.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

from authz.check import credentials, routes, sessions
from authz.check.credentials import CredentialSources
from authz.check.graphql import RequestBody
from authz.check.reasons import OUTCOMES, Reason
from authz.check.sessions import SessionCheck, SessionCredential, SessionRefusal
from authz.check.verify import SecretVerifier
from authz.keys import format as key_format
from authz.keys import scopes
from authz.keys.format import ParsedKey
from authz.keys.policy import Deadlines, KeyPolicy
from authz.keys.record import KeyRecord
from authz.ratelimit.gcra import Verdict
from authz.ratelimit.limiters import KeyLimits
from authz.sessions.browser import BrowserSignals, is_navigation, signin_location
from authz.sessions.record import SessionRecord
from authz.storage.lookup import Missing, RecordLookup

log = logging.getLogger(__name__)


class CheckInput(NamedTuple):
    """One request to decide. Named tuples, not frozen dataclasses, for this and ``Decision``:
    both are built on every check, and a named tuple is built in about half the time (~0.3 µs
    each saved; measured with ``python -m bench.micro``)."""

    method: str
    path: str  # as the client sent it, query string included
    sources: CredentialSources
    client_address: str  # the address Envoy trusts (see the transports)
    # True: skip phase 7 — the caller authorizes each operation on the verified record itself
    # (the keys REST API, whose operations need keys:manage or admin, not a route scope).
    any_scope: bool = False
    # What a browser sent (cookie, Origin, Sec-Fetch-*); the transports read it only when the
    # request carries no key, so a key's check never pays for it.
    browser: BrowserSignals | None = None
    body: RequestBody | None = None  # the GraphQL route only (phase 7)


# A CheckInput from all seven fields in order, built in C (no generated ``__new__`` frame): the
# transports build one per request this way (see ``_decision``).
new_check_input = partial(tuple.__new__, CheckInput)


class Decision(NamedTuple):
    reason: Reason
    # The key's record once it was found — on an admission, and on a denial after the lookup
    # (authentication events name its user); a denial never answers from it.
    record: KeyRecord | None = None
    key_id: str | None = None  # public id, when the credential parsed: safe to log
    # Phase 8's verdict when it set numbers for the x-ratelimit-* headers (None: no headers).
    limit: Verdict | None = None
    location: str | None = None  # a browser's refused page load: where to sign in (302)

    @property
    def allowed(self) -> bool:
        return self.reason is Reason.ALLOWED


_ALLOWED = Reason.ALLOWED
# A Decision from all five fields in order, without the generated ``__new__`` (a Python frame
# per call): the warm path's admissions (one per check) are built this way.
_decision = partial(tuple.__new__, Decision)


@dataclass(frozen=True, slots=True)
class CheckPolicy:
    accepted_envs: frozenset[str]
    query_param_enabled: bool


class Checker:
    def __init__(
        self,
        policy_: CheckPolicy,
        lookup: RecordLookup[KeyRecord],
        verifier: SecretVerifier,
        on_allowed: Callable[[KeyRecord], None] = lambda _r: None,
        clock: Callable[[], float] = time.time,
        *,
        limits: KeyLimits | None = None,
        sessions: SessionCheck | None = None,
        on_denied: Callable[[Decision, CheckInput], None] | None = None,
    ) -> None:
        self._policy = policy_
        self.lookup = lookup
        self.verifier = verifier
        self._on_allowed = on_allowed
        self._clock = clock
        self.limits = limits  # phase 8; None: Envoy's ratelimit filter enforces (or nobody)
        self.sessions = sessions  # phases 1–5 of a browser session; None: keys only
        # Every denial with a key id is reported here (authentication events: an append).
        self._on_denied = on_denied
        # The central key policy (authz/keys/policy.py): replaced whole when it changes.
        self._key_policy = KeyPolicy()
        self._enforce_policy = False  # whether it can refuse an existing key (else: skipped)
        self._deadlines = Deadlines()

    @property
    def key_policy(self) -> KeyPolicy:
        return self._key_policy

    @key_policy.setter
    def key_policy(self, policy: KeyPolicy) -> None:
        self._key_policy = policy
        self._enforce_policy = policy.enforces_at_check

    async def check(self, request: CheckInput) -> Decision:
        key = self._parse(request)
        if not isinstance(key, ParsedKey):
            return await self._check_other(key, request)
        found = await self.lookup.get(key.key_id)
        if isinstance(found, Missing):
            return self._reported(_missing(found, key), request)
        if found.env != key.env or not await self.verifier.verify(key, found):
            return self._reported(_invalid(key, found), request)
        decision = self.authorize(found, request)
        if not decision.allowed:
            return self._reported(decision, request)
        if self.limits is None:
            return self._admit(decision)
        return self._reported(self._admit(decision, await self.limits.decide(found)), request)

    async def check_safely(self, request: CheckInput) -> Decision:
        """``check``, failing closed: an unexpected error is an ``unavailable`` denial (503)."""
        try:
            return await self.check(request)
        except Exception as exc:  # the type only: messages may quote the input
            log.error("check failed", extra={"error": type(exc).__name__})
            return Decision(Reason.UNAVAILABLE)

    def check_now(self, request: CheckInput) -> Decision | None:
        """The same decision when it needs no I/O (warm caches); None when it would wait.

        Transports call this first and fall back to ``check``: a warm request then runs without
        creating a task or suspending.
        """
        key = self._parse(request)
        if not isinstance(key, ParsedKey):
            return self._check_other_now(key, request)
        found = self.lookup.cached(key.key_id)
        if found is None:
            return None
        if isinstance(found, Missing):
            return self._reported(_missing(found, key), request)
        if found.env != key.env:
            return self._reported(_invalid(key, found), request)
        verified = self.verifier.known(key, found)
        if verified is None:
            return None
        if not verified:
            return self._reported(_invalid(key, found), request)
        decision = self.authorize(found, request)
        if decision.reason is not _ALLOWED:
            return self._reported(decision, request)
        limits = self.limits
        if limits is None:
            self._on_allowed(found)
            return decision
        verdict = limits.decide_now(found)
        if verdict is None:
            return None
        if verdict.allowed and not verdict.degraded and verdict.limit.per_hour:
            # _admit's common outcome, without its second look at the decision: admitted with
            # the numbers for the headers (an admission is never reported as a denial).
            self._on_allowed(found)
            return _decision((_ALLOWED, found, found.key_id, verdict, None))
        return self._reported(self._admit(decision, verdict), request)

    def _reported(self, decision: Decision, request: CheckInput) -> Decision:
        """A denial with a key id goes to ``on_denied`` (an append); only denial paths call this,
        so a warm admission pays nothing for authentication events."""
        if (
            decision.key_id is not None
            and self._on_denied is not None
            and decision.reason is not _ALLOWED
        ):
            self._on_denied(decision, request)
        return decision

    def _parse(self, request: CheckInput) -> ParsedKey | SessionCredential | Decision:
        """Phases 1 and 2: one credential, well formed, of an accepted environment."""
        credential = credentials.extract(request.sources, self._policy.query_param_enabled)
        if isinstance(credential, Reason):
            if credential is Reason.MISSING_KEY and request.browser is not None:
                return self._session_credential(request, request.browser)
            return Decision(credential)
        key = key_format.parse(credential)
        if key is None:
            return Decision(Reason.MALFORMED_KEY)
        if key.env not in self._policy.accepted_envs:
            return Decision(Reason.WRONG_ENVIRONMENT, key_id=key.key_id)
        return key

    def _session_credential(
        self, request: CheckInput, browser: BrowserSignals
    ) -> SessionCredential | Decision:
        found = sessions.credential(request.method, request.path, browser)
        if found is None or self.sessions is None:
            return Decision(Reason.MISSING_KEY)
        return Decision(found) if isinstance(found, Reason) else found

    # --- a request without a key: a browser session, or a refusal ------------------------------

    def _check_other_now(
        self, credential: SessionCredential | Decision, request: CheckInput
    ) -> Decision | None:
        if isinstance(credential, Decision):
            return self._denied(credential, request)
        assert self.sessions is not None  # _session_credential returns none without it
        session = self.sessions.now(credential)
        if session is None:
            return None
        if isinstance(session, SessionRefusal):
            return self._denied(Decision(session.reason, key_id=session.key_id), request)
        found = self.lookup.cached(session.key_id or "")
        if found is None:
            return None
        decision = self._authorize_session(session, found, request)
        if not decision.allowed or self.limits is None or decision.record is None:
            return self._admit(decision)
        verdict = self.limits.decide_now(decision.record)
        return None if verdict is None else self._reported(self._admit(decision, verdict), request)

    async def _check_other(
        self, credential: SessionCredential | Decision, request: CheckInput
    ) -> Decision:
        if isinstance(credential, Decision):
            return self._denied(credential, request)
        assert self.sessions is not None
        session = await self.sessions.get(credential)
        if isinstance(session, SessionRefusal):
            return self._denied(Decision(session.reason, key_id=session.key_id), request)
        found = await self.lookup.get(session.key_id or "")
        decision = self._authorize_session(session, found, request)
        if not decision.allowed or self.limits is None or decision.record is None:
            return self._admit(decision)
        verdict = await self.limits.decide(decision.record)
        return self._reported(self._admit(decision, verdict), request)

    def _authorize_session(
        self, session: SessionRecord, found: KeyRecord | Missing, request: CheckInput
    ) -> Decision:
        """Phases 5–7 of a session: those of its key (the key's record, read live), the central
        key policy included."""
        if isinstance(found, Missing):  # the key is gone: the session with it
            reason = Reason.UNAVAILABLE if found is Missing.UNAVAILABLE else Reason.INVALID_SESSION
            return self._denied(Decision(reason, key_id=session.key_id), request)
        decision = self.authorize(found, request)
        if decision.allowed:
            assert self.sessions is not None
            self.sessions.seen(session)
            return decision
        return self._denied(decision, request)

    def _denied(self, decision: Decision, request: CheckInput) -> Decision:
        """A refusal of a request without a key: reported (when a key id is known, the session's
        key), and a 401 for a browser's page load of MLflow's UI becomes a way to sign in."""
        self._reported(decision, request)
        if OUTCOMES[decision.reason].status != 401 or not is_navigation(
            request.method, request.browser
        ):
            return decision
        if not routes.is_browser_route(request.path):
            return decision
        location = signin_location(request.path, decision.reason.value)
        return decision._replace(location=location)

    # --- phases 5–8 -----------------------------------------------------------------------------

    def authorize(self, record: KeyRecord, request: CheckInput) -> Decision:
        """Phases 5–7 for a verified key: status, network, scope (``_admit`` completes it)."""
        now = self._clock()
        if record.revoked_at is not None and record.revoked_at <= now:
            return _refused(Reason.REVOKED, record)
        if record.disabled_at is not None and record.disabled_at <= now:
            return _refused(Reason.USER_DISABLED, record)
        if record.expires_at is not None and record.expired(now):
            return _refused(Reason.EXPIRED, record)
        if self._enforce_policy:
            refused = self._policy_refuses(record, now)
            if refused is not None:
                return refused
        # The allowlist: an address we cannot read never matches (memoised per address).
        if record.networks and not record.allows_client(request.client_address):
            return _refused(Reason.IP_NOT_ALLOWED, record)
        if not request.any_scope:
            needed = routes.required_scope(request.method, request.path, request.body)
            if not scopes.grants(record.scopes, needed):
                return _refused(Reason.INSUFFICIENT_SCOPE, record)
        return _decision((_ALLOWED, record, record.key_id, None, None))

    def _policy_refuses(self, record: KeyRecord, now: float) -> Decision | None:
        """Phase 5, the central policy: past its maximum lifetime, or unused for too long."""
        expiry, inactive = self._deadlines.of(self._key_policy, record)
        if expiry is not None and now >= expiry:
            return _refused(Reason.EXPIRED, record)
        if inactive is not None and now >= inactive:
            return _refused(Reason.INACTIVE, record)
        return None

    def _admit(self, decision: Decision, verdict: Verdict | None = None) -> Decision:
        """Phase 8's outcome; an admission is reported (last-used, hooks) only once it stands."""
        record = decision.record
        if record is None or not decision.allowed:
            return decision
        if verdict is None:
            self._on_allowed(record)
            return decision
        if verdict.unavailable:  # redis_down = deny: the limiter could not count
            return _refused(Reason.UNAVAILABLE, record)
        if not verdict.allowed:
            return Decision(Reason.RATE_LIMITED, record=record, key_id=record.key_id, limit=verdict)
        self._on_allowed(record)
        if verdict.degraded or verdict.limit.unlimited:
            return decision  # no numbers are known (or none apply): no headers
        return Decision(Reason.ALLOWED, record=record, key_id=record.key_id, limit=verdict)


def _invalid(key: ParsedKey, found: KeyRecord) -> Decision:
    return Decision(Reason.INVALID_SECRET, record=found, key_id=key.key_id)


def _refused(reason: Reason, record: KeyRecord) -> Decision:
    return Decision(reason, record=record, key_id=record.key_id)


def _missing(found: Missing, key: ParsedKey) -> Decision:
    reason = Reason.UNKNOWN_KEY if found is Missing.UNKNOWN else Reason.UNAVAILABLE
    return Decision(reason, key_id=key.key_id)
