"""Signing in with a key: the Check decides, a session records the outcome.

1. same origin — the form must be posted from this gateway's page (``same_origin``), else 403;
2. rate limit — per client address through the shared limiter (``HOKUSAI_SIGNIN_RATE_LIMIT``,
   ``HOKUSAI_SIGNIN_BURST``): a loop of wrong keys is answered 429 with ``Retry-After``;
3. the key — through the same ``Checker`` as every request (phases 1–6, ``check_safely``), then
   ``mlflow:read``, which a session needs to be of any use;
4. no oracle — unknown, malformed and wrong-secret keys get one message, and every refusal costs
   one bcrypt (a dummy one when the Check ran none: ``SecretVerifier.spend``), so neither the
   words nor the time tell whether a key id exists;
5. the outcome — a refusal whose key parsed to a key id is audited
   (``session.signin_refused``); a success starts a session with a fresh id (the browser's old
   one, if any, is ended: no fixation) and returns the cookie and where to go
   (``return_location``: ``next`` and the fragment, both re-checked).

Each outcome with a key id is also an authentication event (``authz.events.recorder``, kinds
``signin``, ``signin_refused`` and ``signout``; an append, written in batches), beside the audit
rows the triggers write. The Check the sign-in runs reports nothing itself (``outside_signin``):
a refused sign-in is one event, with the reason the page gave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from authz.check.checker import Checker, CheckInput, Decision
from authz.check.credentials import CredentialSources
from authz.check.reasons import OUTCOMES, Reason
from authz.events.recorder import EventRecorder
from authz.keys import scopes
from authz.management.sessions import REPLACED, SIGNED_OUT, SessionService
from authz.ratelimit.gcra import Limit, ceil_seconds
from authz.ratelimit.limiters import RateLimiter
from authz.sessions import cookie
from authz.sessions.browser import BrowserSignals, return_location, same_origin
from authz.settings import Settings
from authz.transports import wire

MAX_KEY = 200  # characters: far above a key's 86, far below anything costly
LIMIT_PREFIX = "signin:"
CHECK_PATH = wire.SIGNIN_PATH  # the path of the Check a sign-in runs, and its events' route
# One message whatever a key's existence: these refusals all read the same.
NOT_ACCEPTED = frozenset(
    {
        Reason.MISSING_KEY,
        Reason.MALFORMED_KEY,
        Reason.MULTIPLE_CREDENTIALS,
        Reason.WRONG_ENVIRONMENT,
        Reason.UNKNOWN_KEY,
        Reason.INVALID_SECRET,
    }
)
NOT_ACCEPTED_MESSAGE = (
    "That key was not accepted. Paste it again exactly as it was shown (hk_live_…), "
    "or ask for a new one."
)
NO_READ_MESSAGE = "This key cannot read MLflow: it needs the mlflow:read scope."
CROSS_SITE_MESSAGE = "This sign-in did not come from this gateway's page: sign in here."


@dataclass(frozen=True, slots=True)
class Attempt:
    key: str
    next: str | None
    fragment: str | None
    client: str
    user_agent: str | None
    browser: BrowserSignals | None
    old_session: str | None  # the session id the browser already had, if any


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int  # 303 on success, else the page's status
    location: str | None = None
    set_cookie: str | None = None
    message: str | None = None
    retry_after: int | None = None


def outside_signin(
    denied: Callable[[Decision, CheckInput], None],
) -> Callable[[Decision, CheckInput], None]:
    """The keys API's ``on_denied``: every refused check but a sign-in's (``SignIn`` records
    those as ``signin_refused``)."""

    def report(decision: Decision, request: CheckInput) -> None:
        if request.path != CHECK_PATH:
            denied(decision, request)

    return report


class SignIn:
    def __init__(
        self,
        checker: Checker,
        sessions: SessionService,
        limiter: RateLimiter,
        settings: Settings,
        events: EventRecorder | None = None,
    ) -> None:
        self._checker, self._sessions, self._limiter = checker, sessions, limiter
        self._limit = Limit(settings.signin_rate_limit, settings.signin_burst)
        self._events = events  # None: recording is off (HOKUSAI_EVENTS_QUEUE_SIZE=0)

    async def attempt(self, attempt: Attempt) -> Outcome:
        if attempt.browser is None or not same_origin(attempt.browser):
            return Outcome(403, message=CROSS_SITE_MESSAGE)
        verdict = await self._limiter.decide(LIMIT_PREFIX + attempt.client, self._limit)
        if not verdict.allowed and not verdict.degraded:
            wait = max(1, ceil_seconds(verdict.retry_after))
            text = f"Too many sign-in attempts from your address: wait {wait} s and try again."
            return Outcome(429, message=text, retry_after=wait)
        return await self._check(attempt)

    async def _check(self, attempt: Attempt) -> Outcome:
        verifier = self._checker.verifier
        verifier.begin_attempt()
        key = attempt.key.strip()[:MAX_KEY]
        request = CheckInput(
            "GET",
            CHECK_PATH,
            CredentialSources(f"Bearer {key}" if key else None, None, ""),
            attempt.client,
            any_scope=True,
        )
        decision = await self._checker.check_safely(request)
        record = decision.record
        if (
            decision.allowed
            and record is not None
            and scopes.grants(record.scopes, scopes.MLFLOW_READ)
        ):
            return await self._start(attempt, record.key_id, record.user_id)
        if not verifier.attempt_spent():
            await verifier.spend()
        if decision.key_id is not None:
            reason = decision.reason.value if not decision.allowed else "insufficient_scope"
            user_id = None if record is None else record.user_id
            self._event("signin_refused", reason, decision.key_id, user_id, attempt.client)
            await asyncio.to_thread(self._sessions.refused, decision.key_id, reason, attempt.client)
        if decision.allowed:
            return Outcome(403, message=NO_READ_MESSAGE)
        return Outcome(OUTCOMES[decision.reason].status, message=message_for(decision.reason))

    async def _start(self, attempt: Attempt, key_id: str, user_id: int) -> Outcome:
        if attempt.old_session is not None:
            await self.end(attempt.old_session, REPLACED, attempt.client)
        started = await asyncio.to_thread(
            self._sessions.start, key_id, user_id, attempt.client, attempt.user_agent
        )
        self._event("signin", Reason.ALLOWED.value, key_id, user_id, attempt.client)
        return Outcome(
            303,
            location=return_location(attempt.next, attempt.fragment),
            set_cookie=cookie.set_cookie(started.session_id, started.max_age),
        )

    async def end(self, session_id: str, reason: str = SIGNED_OUT, client: str = "") -> None:
        """End a session, and forget it in this process at once (elsewhere: the NOTIFY)."""
        owner = await asyncio.to_thread(self._sessions.end, session_id, reason)
        if owner is not None:
            route = wire.SIGNOUT_PATH if reason == SIGNED_OUT else CHECK_PATH
            self._event("signout", reason, owner.key_id, owner.user_id, client, route=route)
        if self._checker.sessions is not None:
            await self._checker.sessions.lookup.invalidate(cookie.id_hash(session_id))

    def _event(
        self,
        kind: str,
        reason: str,
        key_id: str | None,
        user_id: int | None,
        client: str,
        *,
        route: str = CHECK_PATH,
    ) -> None:
        if self._events is not None:
            self._events.signin(
                kind,
                reason=reason,
                key_id=key_id,
                user_id=user_id,
                client_address=client,
                route=route,
                method="POST",
            )


def message_for(reason: Reason) -> str:
    """What the sign-in page says about a refused key (the denial table, minus the oracle)."""
    if reason in NOT_ACCEPTED:
        return NOT_ACCEPTED_MESSAGE
    if reason is Reason.INSUFFICIENT_SCOPE:
        return NO_READ_MESSAGE
    return OUTCOMES[reason].message
