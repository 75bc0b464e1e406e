"""What both Check transports share: the answer sequence, the encoded-response cache, and what
an allowance tells the upstream.

* ``Answers``: ``check_now`` (no I/O when the caches are warm), else ``check_safely`` (an
  unexpected error is an ``unavailable`` denial: fail closed); then the outcome is counted and
  the response encoded. Written once; the gRPC and HTTP transports differ only in how they read a
  request and how they wait.
* ``EncodedResponses``: a denial depends only on its reason (and, when the credential parsed,
  its key id: Envoy files the key id and reason of a denial in its access logs, so usage and
  ``hokusai auth events`` can name the key) and an allowance only on the key record (id,
  version), so the hot path re-encodes nothing. Allowances are kept for the most
  recently used keys only: a miss re-encodes in a few microseconds, while keeping one per key
  costs ~0.4 KB per transport (measured: 100 000 cached keys stay under the memory budget only
  with this bound). Per-request rate-limit numbers (in-Check limiting) are appended to the cached
  bytes. The one answer encoded per request: a browser's refused page load, sent to the sign-in
  page (``Decision.location``).
* ``identity_headers`` / ``metadata_values``: the identity the upstream may trust, and the
  dynamic metadata later filters read (names in ``wire.py``). A denial's headers and body are
  the reason table's (``authz.check.reasons``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from authz.check.checker import Checker, CheckInput, Decision
from authz.check.reasons import Reason
from authz.keys.record import KeyRecord
from authz.ratelimit.gcra import Verdict
from authz.telemetry import metrics
from authz.transports import wire

ALLOWANCES_KEPT = 10_000
KEYED_DENIALS_KEPT = 10_000  # (reason, key id) denials kept encoded; cleared whole when full


def identity_headers(record: KeyRecord) -> list[tuple[str, str]]:
    return [
        (wire.USER_ID_HEADER, str(record.user_id)),
        (wire.KEY_ID_HEADER, record.key_id),
        (wire.SCOPES_HEADER, ",".join(sorted(record.scopes))),
    ]


def denial_metadata(reason: Reason, key_id: str) -> dict[str, str]:
    """What a denial tells Envoy's access logs (never the client): the key id and the reason."""
    return {wire.KEY_ID_HEADER: key_id, wire.REASON_HEADER: reason.value}


def metadata_values(record: KeyRecord) -> dict[str, str]:
    """Dynamic metadata for later filters (rate limit, access log); the same names as headers."""
    return {
        wire.KEY_ID_HEADER: record.key_id,
        wire.USER_ID_HEADER: str(record.user_id),
        wire.RATE_LIMIT_HEADER: ""
        if record.rate_limit_per_hour is None
        else str(record.rate_limit_per_hour),
        wire.BURST_HEADER: "" if record.burst is None else str(record.burst),
    }


class EncodedResponses:
    def __init__(
        self,
        deny: Callable[[Reason], bytes],
        allow: Callable[[KeyRecord], bytes],
        with_limit: Callable[[bytes, Verdict], bytes],
        with_key: Callable[[bytes, Reason, str], bytes],
        redirect: Callable[[str], bytes],
        *,
        size: int = ALLOWANCES_KEPT,
    ) -> None:
        self._denials = {reason: deny(reason) for reason in Reason}
        self._with_key = with_key
        self._keyed: dict[tuple[Reason, str], bytes] = {}
        self._allow = allow
        self._with_limit = with_limit
        self._redirect = redirect
        self._allowances: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._size = size

    def encode(self, decision: Decision) -> bytes:
        record = decision.record
        if record is None or decision.reason is not Reason.ALLOWED:
            if decision.location is not None:
                encoded = self._redirected(decision.location, decision.reason, decision.key_id)
            elif decision.key_id is None:
                encoded = self._denials[decision.reason]
            else:
                encoded = self._keyed_denial(decision.reason, decision.key_id)
        else:
            encoded = self._allowance(record)
        return encoded if decision.limit is None else self._with_limit(encoded, decision.limit)

    def _redirected(self, location: str, reason: Reason, key_id: str | None) -> bytes:
        """A browser's way to the sign-in page (never cached: the way back is per request); with
        the session's key id for the access logs when it is known."""
        encoded = self._redirect(location)
        return encoded if key_id is None else self._with_key(encoded, reason, key_id)

    def _keyed_denial(self, reason: Reason, key_id: str) -> bytes:
        encoded = self._keyed.get((reason, key_id))
        if encoded is None:
            encoded = self._with_key(self._denials[reason], reason, key_id)
            if len(self._keyed) >= KEYED_DENIALS_KEPT:
                self._keyed.clear()
            self._keyed[(reason, key_id)] = encoded
        return encoded

    def _allowance(self, record: KeyRecord) -> bytes:
        cache_key = (record.key_id, record.version)
        encoded = self._allowances.get(cache_key)
        if encoded is None:
            encoded = self._allow(record)
            self._allowances[cache_key] = encoded
            if len(self._allowances) > self._size:
                self._allowances.popitem(last=False)
        else:
            self._allowances.move_to_end(cache_key)
        return encoded

    def unavailable(self) -> bytes:
        return self._denials[Reason.UNAVAILABLE]


class Answers:
    """One transport's answer to a Check request (see the module doc); ``carrier`` is what
    telemetry reads the trace context from (the transport's headers or request)."""

    __slots__ = ("_checker", "_responses", "_transport")

    def __init__(self, checker: Checker, responses: EncodedResponses, transport: str) -> None:
        self._checker, self._responses, self._transport = checker, responses, transport

    def now(self, request: CheckInput, started: int, carrier: object) -> bytes | None:
        """The answer when it needs no I/O; None when the transport must await ``later``."""
        decision = self._checker.check_now(request)
        if decision is None:
            return None
        metrics.checked(decision.reason, started, self._transport, carrier)
        return self._responses.encode(decision)

    async def later(self, request: CheckInput, started: int, carrier: object) -> bytes:
        decision = await self._checker.check_safely(request)
        metrics.checked(decision.reason, started, self._transport, carrier)
        return self._responses.encode(decision)
