"""Encoded check responses, reused across requests — the same cache for both transports.

A denial depends only on its reason and an allowance only on the key record (id, version), so
the hot path re-encodes nothing. Allowances are kept for the most recently used keys only: a
miss re-encodes in a few microseconds, while keeping one per key costs ~0.4 KB per transport
(measured: 100 000 cached keys stay under the memory budget only with this bound).
Per-request rate-limit numbers (in-Check limiting) are appended to the cached bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from authz.check.checker import Decision
from authz.check.reasons import Reason
from authz.keys.record import KeyRecord
from authz.ratelimit.limiters import Verdict

ALLOWANCES_KEPT = 10_000


class EncodedResponses:
    def __init__(
        self,
        deny: Callable[[Reason], bytes],
        allow: Callable[[KeyRecord], bytes],
        with_limit: Callable[[bytes, Verdict], bytes],
        size: int = ALLOWANCES_KEPT,
    ) -> None:
        self._denials = {reason: deny(reason) for reason in Reason}
        self._allow = allow
        self._with_limit = with_limit
        self._allowances: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._size = size

    def encode(self, decision: Decision) -> bytes:
        record = decision.record
        if record is None or not decision.allowed:
            encoded = self._denials[decision.reason]
        else:
            encoded = self._allowance(record)
        return encoded if decision.limit is None else self._with_limit(encoded, decision.limit)

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
