"""The gRPC server: ext_authz ``Authorization/Check`` and ``grpc.health.v1``.

Check is registered as a generic handler whose responses are pre-serialised bytes (see
``envoy.ResponseCache``), so grpcio does not re-encode a message per call. ``GrpcServer`` serves
the handlers it is given (Check, RateLimitService, AccessLogService) and health; it creates the
grpcio server only in ``start``: grpcio's asyncio core runs a polling thread for as long as a
server object exists, so an unstarted server must not own one (it would outlive the interpreter).
"""

from __future__ import annotations

import grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from authz.check.checker import Checker
from authz.telemetry import metrics
from authz.transports.envoy import ResponseCache, to_input
from authz.transports.responses import Answers

CHECK_SERVICE = "envoy.service.auth.v3.Authorization"


def preencoded(data: bytes) -> bytes:
    """The response serializer of handlers that return already-encoded protobuf bytes."""
    return data


class CheckService:
    def __init__(self, checker: Checker, trusted_hops: int, docs_base: str) -> None:
        self._hops = trusted_hops
        self._answers = Answers(checker, ResponseCache(docs_base), "grpc")

    async def check(self, request: CheckRequest, _context: grpc.aio.ServicerContext) -> bytes:
        started = metrics.now()
        check_input = to_input(request, self._hops)
        answer = self._answers.now(check_input, started, request)
        if answer is None:
            answer = await self._answers.later(check_input, started, request)
        return answer

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


_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 1 << 20),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]


class GrpcServer:
    def __init__(self, *handlers: grpc.GenericRpcHandler) -> None:
        self._handlers = handlers
        self.health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        server = grpc.aio.server(options=_OPTIONS)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        server.add_generic_rpc_handlers(self._handlers)
        bound = server.add_insecure_port(f"{host}:{port}")
        if bound == 0:
            raise OSError(f"cannot bind the gRPC server to {host}:{port}")
        await server.start()
        self._server = server
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
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
