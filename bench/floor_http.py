"""The Python HTTP floor: a raw asyncio + httptools ext_authz ``http_service`` doing only a dict
lookup of sha256(token). Benchmark reference only, never used by the product.

``python -m bench.floor_http --port N --keys FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from pathlib import Path

import httptools

from bench.floor_common import bearer, load_keys

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
DENIED = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n"


class FloorProtocol(asyncio.Protocol):
    def __init__(self, table: dict[bytes, str]) -> None:
        self._table = table
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._token = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def on_message_begin(self) -> None:
        self._token = ""

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self._token = bearer(value.decode("latin-1"))

    def on_message_complete(self) -> None:
        known = hashlib.sha256(self._token.encode()).digest() in self._table
        if self._transport is not None:
            self._transport.write(OK if known else DENIED)


async def serve(port: int, table: dict[bytes, str]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FloorProtocol(table), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keys", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, load_keys(args.keys)))


if __name__ == "__main__":
    main()
