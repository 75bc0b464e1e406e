"""The gRPC server: ext_authz ``Authorization/Check`` and ``grpc.health.v1``.

Check is registered as a generic handler whose responses are pre-serialised bytes (see
``envoy_check.ResponseCache``), so grpcio does not re-encode a message per call. Other services
(rate limit, access log) register themselves through ``add_handlers``.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from authz.check.checker import Checker, Decision
from authz.telemetry import metrics
from authz.transports.envoy import ResponseCache, to_input

CHECK_SERVICE = "envoy.service.auth.v3.Authorization"


def preencoded(data: bytes) -> bytes:
    """The response serializer of handlers that return already-encoded protobuf bytes."""
    return data


class CheckService:
    def __init__(
        self,
        checker: Checker,
        trusted_hops: int,
        docs_base: str,
        on_decision: Callable[[Decision], None],
    ) -> None:
        self._checker = checker
        self._hops = trusted_hops
        self._responses = ResponseCache(docs_base)
        self._on_decision = on_decision

    async def check(self, request: CheckRequest, _context: grpc.aio.ServicerContext) -> bytes:
        started = metrics.now()
        check_input = to_input(request, self._hops)
        decision = self._checker.check_now(check_input)
        if decision is None:
            decision = await self._checker.check_safely(check_input)
        self._on_decision(decision)
        metrics.checked(decision.reason, started, "grpc", request)
        return self._responses.encode(decision)

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            CHECK_SERVICE,
            {
                "Check": grpc.unary_unary_rpc_method_handler(
                    self.check,
                    request_deserializer=CheckRequest.FromString,
                    response_serializer=preencoded,
                ),
            },
        )


class GrpcServer:
    def __init__(self) -> None:
        self._server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", 1 << 20),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ]
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)

    def add_handlers(self, *handlers: grpc.GenericRpcHandler) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    async def start(self, host: str, port: int) -> int:
        bound = self._server.add_insecure_port(f"{host}:{port}")
        if bound == 0:
            raise OSError(f"cannot bind the gRPC server to {host}:{port}")
        await self._server.start()
        return int(bound)

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", CHECK_SERVICE):
            await self.health.set(service, status)

    async def stop(self, grace: float) -> None:
        await self._server.stop(grace)
