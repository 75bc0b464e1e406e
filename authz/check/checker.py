"""The check pipeline, shared by every transport (gRPC ext_authz, HTTP ext_authz, the REST API).

``Checker.check`` reads top to bottom as its phases; each returns the next value or a denial:

1. credential — exactly one, from the Authorization header, X-API-Key or ``api_key`` (no I/O)
2. format     — shape and CRC32 checksum, then the environment this gateway accepts (no I/O)
3. record     — in-process cache → Redis → Postgres (``authz/storage/lookup.py``)
4. secret     — fingerprint compare, or one bcrypt the first time (``verify.py``)
5. status     — revoked? expired? (checked on every request: expiry fires no notification)
6. network    — the client address Envoy determined, against the key's allowlist
7. scope      — the route and method's scope (``routes.py``)
8. rate limit — only with ``HOKUSAI_RATE_LIMIT_ENFORCEMENT=check`` (``limits`` given): the key's
   limit, decided by the limiter (``authz/ratelimit/``); a denial is ``rate_limited`` (429).
   Otherwise Envoy's global ratelimit filter does this after the Check, through
   ``authz/transports/ratelimit_service.py``.

A denial is a returned ``Decision``, never an exception; ``check_safely`` turns an unexpected
exception into an ``unavailable`` denial (fail closed) for every caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from authz.check import credentials, routes
from authz.check.credentials import CredentialSources
from authz.check.reasons import Reason
from authz.check.verify import SecretVerifier
from authz.keys import format as key_format
from authz.keys import scopes
from authz.keys.record import KeyRecord
from authz.ratelimit.gcra import Verdict
from authz.ratelimit.limiters import KeyLimits
from authz.storage.lookup import Missing, RecordLookup

log = logging.getLogger(__name__)


class CheckInput(NamedTuple):  # named tuples: built per request at a third of a dataclass's cost
    method: str
    path: str  # as the client sent it, query string included
    sources: CredentialSources
    client_address: str  # the address Envoy trusts (see the transports)
    # True: skip phase 7 — the caller authorizes each operation on the verified record itself
    # (the keys REST API, whose operations need keys:manage or admin, not a route scope).
    any_scope: bool = False


class Decision(NamedTuple):
    reason: Reason
    record: KeyRecord | None = None
    key_id: str | None = None  # public id, when the credential parsed: safe to log
    # Phase 8's verdict when it set numbers for the x-ratelimit-* headers (None: no headers).
    limit: Verdict | None = None

    @property
    def allowed(self) -> bool:
        return self.reason is Reason.ALLOWED


@dataclass(frozen=True, slots=True)
class CheckPolicy:
    accepted_envs: frozenset[str]
    query_param_enabled: bool


class Checker:
    def __init__(
        self,
        policy_: CheckPolicy,
        lookup: RecordLookup,
        verifier: SecretVerifier,
        on_allowed: Callable[[KeyRecord], None] = lambda _r: None,
        clock: Callable[[], float] = time.time,
        *,
        limits: KeyLimits | None = None,
    ) -> None:
        self._policy = policy_
        self.lookup = lookup
        self.verifier = verifier
        self._on_allowed = on_allowed
        self._clock = clock
        self.limits = limits  # phase 8; None: Envoy's ratelimit filter enforces (or nobody)

    async def check(self, request: CheckInput) -> Decision:
        key = self._parse(request)
        if isinstance(key, Decision):
            return key
        found = await self.lookup.get(key.key_id)
        if isinstance(found, Missing):
            return _missing(found, key)
        if found.env != key.env or not await self.verifier.verify(key, found):
            return Decision(Reason.INVALID_SECRET, key_id=key.key_id)
        decision = self.authorize(found, request)
        if not decision.allowed or self.limits is None:
            return self._admit(decision)
        return self._admit(decision, await self.limits.decide(found))

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
        if isinstance(key, Decision):
            return key
        found = self.lookup.cached(key.key_id)
        if found is None:
            return None
        if isinstance(found, Missing):
            return _missing(found, key)
        if found.env != key.env:
            return Decision(Reason.INVALID_SECRET, key_id=key.key_id)
        verified = self.verifier.known(key, found)
        if verified is None:
            return None
        if not verified:
            return Decision(Reason.INVALID_SECRET, key_id=key.key_id)
        decision = self.authorize(found, request)
        if not decision.allowed or self.limits is None:
            return self._admit(decision)
        verdict = self.limits.decide_now(found)
        return None if verdict is None else self._admit(decision, verdict)

    def _parse(self, request: CheckInput) -> key_format.ParsedKey | Decision:
        """Phases 1 and 2: one credential, well formed, of an accepted environment."""
        credential = credentials.extract(request.sources, self._policy.query_param_enabled)
        if isinstance(credential, Reason):
            return Decision(credential)
        key = key_format.parse(credential)
        if key is None:
            return Decision(Reason.MALFORMED_KEY)
        if key.env not in self._policy.accepted_envs:
            return Decision(Reason.WRONG_ENVIRONMENT, key_id=key.key_id)
        return key

    def authorize(self, record: KeyRecord, request: CheckInput) -> Decision:
        """Phases 5–7 for a verified key: status, network, scope (``_admit`` completes it)."""
        now = self._clock()
        if record.revoked_at is not None and record.revoked_at <= now:
            return Decision(Reason.REVOKED, key_id=record.key_id)
        if record.expired(now):
            return Decision(Reason.EXPIRED, key_id=record.key_id)
        if record.networks and not _address_allowed(record, request.client_address):
            return Decision(Reason.IP_NOT_ALLOWED, key_id=record.key_id)
        if not request.any_scope:
            needed = routes.required_scope(request.method, request.path)
            if not scopes.grants(record.scopes, needed):
                return Decision(Reason.INSUFFICIENT_SCOPE, key_id=record.key_id)
        return Decision(Reason.ALLOWED, record=record, key_id=record.key_id)

    def _admit(self, decision: Decision, verdict: Verdict | None = None) -> Decision:
        """Phase 8's outcome; an admission is reported (last-used, hooks) only once it stands."""
        record = decision.record
        if record is None or not decision.allowed:
            return decision
        if verdict is None:
            self._on_allowed(record)
            return decision
        if verdict.unavailable:  # redis_down = deny: the limiter could not count
            return Decision(Reason.UNAVAILABLE, key_id=record.key_id)
        if not verdict.allowed:
            return Decision(Reason.RATE_LIMITED, key_id=record.key_id, limit=verdict)
        self._on_allowed(record)
        if verdict.degraded or verdict.limit.unlimited:
            return decision  # no numbers are known (or none apply): no headers
        return Decision(Reason.ALLOWED, record=record, key_id=record.key_id, limit=verdict)


def _missing(found: Missing, key: key_format.ParsedKey) -> Decision:
    reason = Reason.UNKNOWN_KEY if found is Missing.UNKNOWN else Reason.UNAVAILABLE
    return Decision(reason, key_id=key.key_id)


def _address_allowed(record: KeyRecord, address: str) -> bool:
    return record.allows_client(address)  # an address we cannot read never matches (memoised)
