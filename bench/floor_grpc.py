"""The Python gRPC floor: a bare ``grpc.aio`` ext_authz that only looks sha256(token) up in a dict.

Benchmark reference only (never used by the product): whatever this costs, any Python gRPC Check
costs at least as much. ``python -m bench.floor_grpc --port N --keys FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from pathlib import Path

import grpc
from envoy.service.auth.v3.external_auth_pb2 import (
    CheckRequest,
    CheckResponse,
    DeniedHttpResponse,
    OkHttpResponse,
)
from envoy.type.v3.http_status_pb2 import HttpStatus
from google.rpc import code_pb2, status_pb2

from bench.floor_common import bearer, load_keys

OK: bytes = CheckResponse(
    status=status_pb2.Status(code=code_pb2.OK), ok_response=OkHttpResponse()
).SerializeToString()
DENIED: bytes = CheckResponse(
    status=status_pb2.Status(code=code_pb2.UNAUTHENTICATED),
    denied_response=DeniedHttpResponse(status=HttpStatus(code=401)),  # type: ignore[arg-type]
).SerializeToString()


def handler(table: dict[bytes, str]) -> grpc.GenericRpcHandler:
    async def check(request: CheckRequest, _context: grpc.aio.ServicerContext) -> bytes:
        header: str = request.attributes.request.http.headers.get("authorization", "")
        token = bearer(header)
        return OK if hashlib.sha256(token.encode()).digest() in table else DENIED

    return grpc.method_handlers_generic_handler(
        "envoy.service.auth.v3.Authorization",
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                check, request_deserializer=CheckRequest.FromString, response_serializer=lambda b: b
            ),
        },
    )


async def serve(port: int, table: dict[bytes, str]) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler(table),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keys", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, load_keys(args.keys)))


if __name__ == "__main__":
    main()
