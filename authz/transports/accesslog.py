"""Envoy's gRPC access log (``envoy.service.accesslog.v3.AccessLogService``) → usage rollups.

Envoy streams batches of ``HTTPAccessLogEntry``; each adds to one rollup of the in-memory
aggregator (status, duration, method, normalised path, the key id the Check filed in dynamic
metadata) — no I/O per entry. The path's query string is never kept: it may hold ``api_key`` (on
denied requests Envoy logs the path as the client sent it). Path segments that look like
identifiers become ``:id`` so routes stay a small set. Entries without a key id (the Check denied
them, or a public route) are counted but not stored: usage is per key.

This runs once per request, so a message is decoded as ``ENTRIES``: ``StreamAccessLogsMessage``
with only the fields usage reads (same numbers, from the real descriptors), so upb skips the rest;
the entry's ``metadata`` and ``response_code`` are kept as their encoded bytes, which repeat from
request to request (one key's metadata, a few statuses), and are read once per distinct value by
the real messages. tests/unit/test_usage_accesslog.py holds the rollups to the plain reading of
the real messages.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.config.core.v3.base_pb2 import Metadata, RequestMethod
from envoy.data.accesslog.v3.accesslog_pb2 import (
    AccessLogCommon,
    HTTPAccessLogEntry,
    HTTPRequestProperties,
    HTTPResponseProperties,
)
from envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage, StreamAccessLogsResponse
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.wrappers_pb2 import UInt32Value

from authz.transports import wire
from authz.transports.grpc import preencoded
from authz.usage.rollups import BUCKET_BOUNDS_MS, UsageAggregator, normalise_path

log = logging.getLogger(__name__)

ACCESS_LOG_SERVICE = "envoy.service.accesslog.v3.AccessLogService"
_EMPTY: bytes = StreamAccessLogsResponse().SerializeToString()

_FIELD = descriptor_pb2.FieldDescriptorProto
_VIEW_PACKAGE = "hokusai.accesslog.view"
# view message → (the real message, {field: the view message it holds, or None: as it is})
VIEW: dict[str, tuple[Descriptor, dict[str, str | None]]] = {
    "Message": (StreamAccessLogsMessage.DESCRIPTOR, {"http_logs": "Entries"}),
    "Entries": (StreamAccessLogsMessage.HTTPAccessLogEntries.DESCRIPTOR, {"log_entry": "Entry"}),
    "Entry": (
        HTTPAccessLogEntry.DESCRIPTOR,
        {"common_properties": "Common", "request": "Request", "response": "Response"},
    ),
    "Common": (
        AccessLogCommon.DESCRIPTOR,
        {
            "start_time": "Span",
            "duration": "Span",
            "time_to_last_downstream_tx_byte": "Span",
            "metadata": "",  # "": its encoded bytes
        },
    ),
    "Span": (Duration.DESCRIPTOR, {"seconds": None, "nanos": None}),  # = Timestamp's fields
    "Request": (
        HTTPRequestProperties.DESCRIPTOR,
        {"request_method": None, "path": None, "original_path": None},
    ),
    "Response": (HTTPResponseProperties.DESCRIPTOR, {"response_code": ""}),
}


def _view() -> type[Message]:
    """The decoding class of ``VIEW``'s ``Message`` (a private pool: nothing else sees it)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="hokusai_accesslog_view.proto", package=_VIEW_PACKAGE, syntax="proto3"
    )
    for name, (real, fields) in VIEW.items():
        message = file.message_type.add(name=name)
        for field_name, holds in fields.items():
            field = real.fields_by_name[field_name]
            label = _FIELD.LABEL_REPEATED if field.is_repeated else _FIELD.LABEL_OPTIONAL
            kept = message.field.add(name=field_name, number=field.number, label=label)
            if holds:
                kept.type, kept.type_name = _FIELD.TYPE_MESSAGE, f".{_VIEW_PACKAGE}.{holds}"
            elif holds == "":
                kept.type = _FIELD.TYPE_BYTES
            elif field.type == _FIELD.TYPE_ENUM:
                kept.type = _FIELD.TYPE_INT32  # the same varint; the number is all we need
            else:
                kept.type = field.type
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    view = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_VIEW_PACKAGE}.Message"))
    return view  # type: ignore[no-any-return]


ENTRIES = _view()
KEPT = 4096  # distinct paths, metadata and statuses remembered each (cleared when full)


_routes: dict[str, str] = {}


def _route(path: str) -> str:
    """``normalise_path``, remembered per path without its query: an API's paths repeat, so a
    request costs one dict hit instead of a regex per segment (1.4 → 0.15 µs)."""
    bare = path.partition("?")[0]
    route = _routes.get(bare)
    if route is None:
        if len(_routes) >= KEPT:
            _routes.clear()
        route = _routes[bare] = normalise_path(bare)
    return route


_key_ids: dict[bytes, str] = {}
_statuses: dict[bytes, int] = {}


def _key_id(metadata: bytes) -> str:
    """The key id in an entry's encoded ``metadata`` ("" for none), remembered per value."""
    key_id = _key_ids.get(metadata)
    if key_id is None:
        fields = Metadata.FromString(metadata).filter_metadata
        value = (
            fields[wire.METADATA_NAMESPACE].fields.get(wire.KEY_ID_HEADER)
            if wire.METADATA_NAMESPACE in fields
            else None
        )
        if len(_key_ids) >= KEPT:
            _key_ids.clear()
        key_id = _key_ids[metadata] = value.string_value if value is not None else ""
    return key_id


def _status(response_code: bytes) -> int:
    """The status in an entry's encoded ``response_code`` (0: none), remembered per value."""
    status = _statuses.get(response_code)
    if status is None:
        if len(_statuses) >= KEPT:
            _statuses.clear()
        status = _statuses[response_code] = UInt32Value.FromString(response_code).value
    return status


def _minute(start: Any) -> int:
    """The minute of a start in its minute's last second, as float seconds place it: one in the
    last 0.1 µs or so rounds up to the next minute (the rollups have always done so)."""
    return int((start.seconds + start.nanos / 1e9) // 60 * 60)


_METHODS: dict[int, str] = {v.number: v.name for v in RequestMethod.DESCRIPTOR.values}
_BOUNDS = BUCKET_BOUNDS_MS


class AccessLogService:
    def __init__(self, usage: UsageAggregator) -> None:
        self._usage = usage
        self.entries = 0
        self.unattributed = 0

    def consume(self, raw: bytes) -> None:
        """One ``StreamAccessLogsMessage`` (encoded) into the rollups, each entry read once: its
        nested messages looked up once, the method's name from a dict, ``HasField`` only for a
        zero duration, the minute in integers, a rollup found by a plain tuple, ``Rollup.add``
        inline. A bad entry is skipped alone, counted in ``entries``."""
        message: Any = ENTRIES.FromString(raw)
        usage = self._usage
        rollups = usage.rollups
        log_entry = message.http_logs.log_entry
        recorded = unattributed = skipped = 0
        error = ""
        for entry in log_entry:
            try:
                common = entry.common_properties
                key_id = _key_ids.get(common.metadata)
                if key_id is None:
                    key_id = _key_id(common.metadata)
                if not key_id:
                    unattributed += 1
                    continue
                seconds = common.start_time.seconds
                second = seconds % 60
                minute = seconds - second if second != 59 else _minute(common.start_time)
                span = common.duration
                span_s, span_ns = span.seconds, span.nanos
                if not (span_s or span_ns) and not common.HasField("duration"):
                    span = common.time_to_last_downstream_tx_byte
                    span_s, span_ns = span.seconds, span.nanos
                latency = float(span_s * 1000.0 + span_ns / 1e6)
                code = entry.response.response_code
                status = _statuses.get(code) or _status(code)  # 0 (no status) asks again
                cls = status // 100 if 100 <= status < 600 else 5
                request = entry.request
                bare = (request.original_path or request.path).partition("?")[0]
                route = _routes.get(bare) or _route(bare)
                key = (key_id, minute, route, _METHODS[request.request_method], cls)
                rollup = rollups.get(key) or usage.open(key)
                if rollup is None:
                    continue
                rollup.count += 1
                if cls >= 4:  # 4xx, 5xx and no status at all: is_error
                    rollup.errors += 1
                rollup.latency_sum_ms += latency
                if latency > rollup.latency_max_ms:  # noqa: PLR1730 (max() is a call: 0.08 µs)
                    rollup.latency_max_ms = latency
                rollup.buckets[bisect_left(_BOUNDS, latency)] += 1
                recorded += 1
            except Exception as exc:  # a bad entry never ends the stream; type only, no path
                skipped, error = skipped + 1, type(exc).__name__
        if skipped:  # one line per message, as many entries as were skipped
            log.warning("access log entries skipped", extra={"error": error, "skipped": skipped})
        self.entries += len(log_entry)
        self.unattributed += unattributed
        usage.recorded += recorded

    async def stream(
        self, messages: AsyncIterator[bytes], _context: grpc.aio.ServicerContext
    ) -> bytes:
        async for message in messages:
            try:
                self.consume(message)
            except Exception as exc:  # a bad message never ends the stream; type only, no path
                log.warning("access log message skipped", extra={"error": type(exc).__name__})
        return _EMPTY

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            ACCESS_LOG_SERVICE,
            {
                "StreamAccessLogs": grpc.stream_unary_rpc_method_handler(
                    self.stream,
                    request_deserializer=None,  # bytes: consume decodes ENTRIES
                    response_serializer=preencoded,
                ),
            },
        )
