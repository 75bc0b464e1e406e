"""Envoy's global rate-limit protocol (``envoy.service.ratelimit.v3``) ↔ the limiter.

Envoy sends one descriptor ``key_id=<id>`` (the Check server's dynamic metadata; see
``cli.envoy_config.key_id_rate_limits``). The limit is the key's record — the Check just cached
it, so the lookup is normally a dict hit; another instance finds it in Redis or Postgres. Every
answer for a limited key carries ``x-ratelimit-limit`` (requests per hour), ``-remaining`` and
``-reset`` (seconds until the full burst is back); Envoy adds them to the upstream's response.
OVER_LIMIT also carries ``retry-after`` and the gateway's JSON denial body (``raw_body``), which
Envoy sends with its 429. When the limiter cannot count and ``redis_down = deny``, the call fails
with UNAVAILABLE, which Envoy turns into 503 when its ``failure_mode_deny`` is on.
"""

from __future__ import annotations

import logging

import grpc
from envoy.config.core.v3.base_pb2 import HeaderValue
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitRequest, RateLimitResponse
from google.protobuf.duration_pb2 import Duration

from authz.check.reasons import Reason, denial_body
from authz.keys.record import KeyRecord
from authz.ratelimit.gcra import Limit, Verdict, ceil_seconds, limit_for
from authz.ratelimit.limiters import RateLimiter
from authz.storage.lookup import Missing, RecordLookup
from authz.transports import wire
from authz.transports.grpc import preencoded
from authz.transports.ratelimit_headers import header_pairs

log = logging.getLogger(__name__)

RATE_LIMIT_SERVICE = "envoy.service.ratelimit.v3.RateLimitService"

_OK = RateLimitResponse.OK
_OVER = RateLimitResponse.OVER_LIMIT
_NO_LIMIT: bytes = RateLimitResponse(overall_code=_OK).SerializeToString()


def key_id_of(request: RateLimitRequest) -> str | None:
    for descriptor in request.descriptors:
        for entry in descriptor.entries:
            if entry.key == wire.RATE_LIMIT_DESCRIPTOR_KEY and entry.value:
                return str(entry.value)
    return None


def limit_headers(verdict: Verdict) -> list[HeaderValue]:
    return [HeaderValue(key=k, value=v) for k, v in header_pairs(verdict)]


def encode(verdict: Verdict, denial: bytes) -> bytes:
    """The response for a limited key (degraded allowances carry no numbers: none are known)."""
    if verdict.degraded and verdict.allowed:
        return _NO_LIMIT
    status = RateLimitResponse.DescriptorStatus(
        code=_OK if verdict.allowed else _OVER,
        current_limit=RateLimitResponse.RateLimit(
            requests_per_unit=verdict.limit.per_hour, unit=RateLimitResponse.RateLimit.HOUR
        ),
        limit_remaining=max(0, verdict.remaining),
        duration_until_reset=Duration(seconds=ceil_seconds(verdict.reset_after)),
    )
    response = RateLimitResponse(
        overall_code=status.code, statuses=[status], response_headers_to_add=limit_headers(verdict)
    )
    if not verdict.allowed:
        response.response_headers_to_add.extend(
            [
                HeaderValue(key="content-type", value="application/json"),
                HeaderValue(key="cache-control", value="no-store"),
            ]
        )
        response.raw_body = denial
    encoded: bytes = response.SerializeToString()
    return encoded


class RateLimitService:
    def __init__(
        self, limiter: RateLimiter, lookup: RecordLookup[KeyRecord], default: Limit, docs_base: str
    ) -> None:
        self._limiter = limiter
        self._lookup = lookup
        self._default = default
        self._denial = denial_body(Reason.RATE_LIMITED, docs_base)
        self.calls = 0

    async def limit_of(self, key_id: str) -> Limit | None:
        """The key's limit, from the record the Check cached (None: not a key we can find)."""
        found = self._lookup.cached(key_id)
        if found is None:
            found = await self._lookup.get(key_id)
        if isinstance(found, Missing):
            return None
        return limit_for(found, self._default)

    async def should_rate_limit(
        self, request: RateLimitRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        self.calls += 1
        key_id = key_id_of(request)
        if key_id is None:
            return _NO_LIMIT
        limit = await self.limit_of(key_id)
        if limit is None or limit.unlimited:
            return _NO_LIMIT  # authentication is the Check's job, not ours
        cost = request.hits_addend or 1
        verdict = self._limiter.decide_now(key_id, limit, cost)
        if verdict is None:
            verdict = await self._limiter.decide(key_id, limit, cost)
        if verdict.unavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "rate limiter unavailable")
        return encode(verdict, self._denial)

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            RATE_LIMIT_SERVICE,
            {
                "ShouldRateLimit": grpc.unary_unary_rpc_method_handler(
                    self.should_rate_limit,
                    request_deserializer=RateLimitRequest.FromString,
                    response_serializer=preencoded,
                ),
            },
        )
