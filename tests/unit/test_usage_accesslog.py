"""The access log → usage rollups: what a batch of ALS entries adds up to, pinned.

``AccessLogService.consume`` is the per-request cost of usage analytics in authz, so it reads the
entries as directly as it can; these tests hold it to the plain reading of an entry (``reference``
below: the status, the latency, the method's name, the route without query, the key id the Check
filed, the minute the request started) and to the exact rollups a fixed batch produced before the
fast path existed (a digest of every row).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import random
from typing import Any

import pytest
from envoy.config.core.v3.base_pb2 import RequestMethod
from envoy.data.accesslog.v3.accesslog_pb2 import HTTPAccessLogEntry
from envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from authz.transports import wire
from authz.transports.accesslog import VIEW, AccessLogService
from authz.usage.rollups import BUCKET_BOUNDS_MS, BUCKETS, UsageAggregator, normalise_path

T0 = 1_700_000_000 - 1_700_000_000 % 60  # a minute boundary
PATHS = (
    "/api/2.0/mlflow/experiments/get?experiment_id=0&api_key=hk_live_secret",
    "/api/2.0/mlflow/runs/get?run_id=1b4f0e985cd14c2a9cd2aaaaaaaaaaaa",
    "/api/2.0/mlflow/experiments/123/runs",
    "/ajax-api/2.0/mlflow/experiments/search",
    "/a/b/c/d/e/f/g/h/i/j?x=1",
    "",
    "/?api_key=hk_live_x",
    "/api/2.0/mlflow/artifacts/0123456789abcdef0123/file#frag",
)


def entry(
    *,
    key_id: str | None,
    seconds: int,
    nanos: int = 0,
    method: int = 1,
    path: str = PATHS[0],
    original_path: str = "",
    status: int | None = 200,
    duration: tuple[int, int] | None = (0, 1_700_000),
    last_byte: tuple[int, int] | None = None,
    key_value: Any = None,
) -> HTTPAccessLogEntry:
    e = HTTPAccessLogEntry()
    common = e.common_properties
    common.start_time.seconds, common.start_time.nanos = seconds, nanos
    if duration is not None:
        common.duration.seconds, common.duration.nanos = duration
    if last_byte is not None:
        span = common.time_to_last_downstream_tx_byte
        span.seconds, span.nanos = last_byte
    if key_id is not None or key_value is not None:
        metadata = Struct()
        metadata.update(
            {wire.KEY_ID_HEADER: key_value if key_value is not None else key_id, "user": "1"}
        )
        common.metadata.filter_metadata[wire.METADATA_NAMESPACE].CopyFrom(metadata)
    # what else Envoy sends, which usage does not read
    common.downstream_remote_address.socket_address.address = "10.0.0.7"
    common.upstream_cluster = "mlflow"
    common.time_to_first_upstream_rx_byte.nanos = 900_000
    e.request.authority, e.request.user_agent = "gateway.example", "mlflow-python-client/3.1"
    e.request.request_id = "1b4f0e98-5cd1-4c2a-9cd2"
    e.response.response_body_bytes = 14
    e.response.response_code_details = "via_upstream"
    e.request.request_method = method  # type: ignore[assignment]
    e.request.path = path
    e.request.original_path = original_path
    if status is not None:
        e.response.response_code.value = status
    return e


def message(entries: list[HTTPAccessLogEntry]) -> bytes:
    m = StreamAccessLogsMessage()
    m.http_logs.log_entry.extend(entries)
    raw: bytes = m.SerializeToString()  # as it comes off the wire
    return raw


def reference(entries: list[HTTPAccessLogEntry]) -> tuple[dict[tuple[Any, ...], list[Any]], int]:
    """The plain reading of each entry, aggregated the plain way: (rollups, unattributed)."""
    rows: dict[tuple[Any, ...], list[Any]] = {}
    unattributed = 0
    for e in entries:
        common = e.common_properties
        fields = common.metadata.filter_metadata
        value = (
            fields[wire.METADATA_NAMESPACE].fields.get(wire.KEY_ID_HEADER)
            if wire.METADATA_NAMESPACE in fields
            else None
        )
        key_id = value.string_value if value is not None else ""
        if not key_id:
            unattributed += 1
            continue
        at = common.start_time.seconds + common.start_time.nanos / 1e9
        span = (
            common.duration
            if common.HasField("duration")
            else common.time_to_last_downstream_tx_byte
        )
        latency = float(span.seconds * 1000.0 + span.nanos / 1e6)
        status = e.response.response_code.value
        path = (e.request.original_path or e.request.path).partition("?")[0]
        cls = status // 100 if 100 <= status < 600 else 5
        key = (
            key_id,
            int(at // 60 * 60),
            normalise_path(path),
            RequestMethod.Name(e.request.request_method).upper(),
            cls,
        )
        row = rows.setdefault(key, [0, 0, 0.0, 0.0, [0] * BUCKETS])
        row[0] += 1
        row[1] += not 100 <= status < 400
        row[2] += latency
        row[3] = max(row[3], latency)
        row[4][bisect.bisect_left(BUCKET_BOUNDS_MS, latency)] += 1
    return rows, unattributed


def consumed(
    entries: list[HTTPAccessLogEntry], per_message: int = 50
) -> tuple[dict[tuple[Any, ...], list[Any]], AccessLogService]:
    usage = UsageAggregator("")
    service = AccessLogService(usage)
    for start in range(0, len(entries), per_message):
        service.consume(message(entries[start : start + per_message]))
    rows = {tuple(k): [r.count, r.errors, r.latency_sum_ms, r.latency_max_ms, r.buckets]
            for k, r in usage._rollups.items()}  # fmt: skip
    return rows, service


def random_batch(seed: int, n: int) -> list[HTTPAccessLogEntry]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        duration = rng.choice(
            [
                (0, rng.randrange(0, 1_000_000_000)),
                (rng.randrange(0, 40), rng.randrange(0, 1_000_000_000)),
                (0, rng.choice([1_000_000, 2_000_000, 7_500_000, 0])),  # on a bound, or zero
                None,  # no duration: the time to the last byte sent
            ]
        )
        out.append(
            entry(
                key_id=rng.choice(["kA", "kB", "kC", "", None]),
                seconds=T0 + rng.randrange(-130, 130),
                nanos=rng.choice([0, rng.randrange(0, 1_000_000_000), 999_999_999]),
                method=rng.randrange(0, 10),
                path=rng.choice(PATHS),
                original_path=rng.choice(["", "", PATHS[2] + "?api_key=x"]),
                status=rng.choice([200, 201, 204, 301, 400, 401, 404, 429, 500, 503, 0, 99, 600]),
                duration=duration,
                last_byte=(0, rng.randrange(0, 50_000_000)) if rng.random() < 0.7 else None,
            )
        )
    return out


@pytest.mark.unit
def test_a_batch_adds_up_to_these_rollups() -> None:
    entries = [
        entry(key_id="kA", seconds=T0 + 1),
        entry(key_id="kA", seconds=T0 + 59, duration=(0, 2_500_000)),
        entry(key_id="kA", seconds=T0 + 61, duration=(1, 0)),  # the next minute
        entry(key_id="kA", seconds=T0 + 2, method=3, status=503, duration=(0, 12_000_000)),
        entry(key_id="kA", seconds=T0 + 3, status=0, duration=None, last_byte=(0, 4_000_000)),
        entry(key_id="kB", seconds=T0 + 4, path="/api/2.0/mlflow/runs/42/x?api_key=hk_live_s"),
        entry(key_id="kB", seconds=T0 + 5, path="/p?api_key=1", original_path="/api/9"),
        entry(key_id=None, seconds=T0 + 6),  # the Check denied it: counted, not stored
        entry(key_id="", seconds=T0 + 7),
        entry(key_id=None, key_value=7, seconds=T0 + 8),  # not a string: no key id
    ]
    rows, service = consumed(entries)
    bucket = bisect.bisect_left(BUCKET_BOUNDS_MS, 1.7)

    def buckets(*at: int) -> list[int]:
        out = [0] * BUCKETS
        for index in at:
            out[index] += 1
        return out

    route = "/api/2.0/mlflow/experiments/get"
    assert rows == {
        ("kA", T0, route, "GET", 2): [2, 0, 1.7 + 2.5, 2.5, buckets(bucket, bucket + 1)],
        ("kA", T0 + 60, route, "GET", 2): [1, 0, 1000.0, 1000.0, buckets(17)],
        ("kA", T0, route, "POST", 5): [1, 1, 12.0, 12.0, buckets(6)],
        ("kA", T0, route, "GET", 5): [1, 1, 4.0, 4.0, buckets(3)],
        ("kB", T0, "/api/2.0/mlflow/runs/:id/x", "GET", 2): [1, 0, 1.7, 1.7, buckets(bucket)],
        ("kB", T0, "/api/:id", "GET", 2): [1, 0, 1.7, 1.7, buckets(bucket)],
    }
    assert (service.entries, service.unattributed) == (10, 3)
    assert all("api_key" not in str(key) and "?" not in str(key) for key in rows)


@pytest.mark.unit
def test_the_rollups_are_the_plain_reading_of_each_entry() -> None:
    entries = random_batch(seed=7, n=3000)
    rows, service = consumed(entries)
    expected, unattributed = reference(entries)
    assert rows == expected
    assert (service.entries, service.unattributed) == (len(entries), unattributed)
    # ...and exactly the rows this batch gave before the fast path (floats summed in order)
    digest = hashlib.sha256(repr(sorted(rows.items())).encode()).hexdigest()
    assert digest == PINNED_DIGEST


@pytest.mark.unit
def test_the_view_decodes_the_real_fields() -> None:
    """Each field the access log decodes has the real message's number and wire type (a message
    may be kept as its bytes, an enum as its number); a span reads Timestamp and Duration alike."""
    for real, fields in VIEW.values():
        for name, holds in fields.items():
            field = real.fields_by_name[name]  # the view takes the number from here
            if holds:  # a view of the message it holds
                assert holds == "Span" or field.message_type.full_name == VIEW[holds][0].full_name
            elif holds == "":  # kept as its encoded bytes: length-delimited
                assert field.type == field.TYPE_MESSAGE
            else:  # a scalar read as it is (an enum as its number)
                assert field.type not in (field.TYPE_MESSAGE, field.TYPE_GROUP)
    spans = {f.name: (f.number, f.type) for f in VIEW["Span"][0].fields}
    assert spans == {f.name: (f.number, f.type) for f in Timestamp.DESCRIPTOR.fields}
    common = VIEW["Common"][0]
    for name in ("start_time", "duration", "time_to_last_downstream_tx_byte"):
        assert common.fields_by_name[name].message_type.full_name in (
            "google.protobuf.Timestamp",
            "google.protobuf.Duration",
        )


@pytest.mark.unit
def test_a_bad_entry_is_skipped_alone_and_a_bad_message_ends_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    usage = UsageAggregator("")
    service = AccessLogService(usage)
    service.consume(
        message(
            [
                entry(key_id="kA", seconds=T0),
                entry(key_id="kA", seconds=T0, method=99),  # no such method
                entry(key_id="kA", seconds=T0),
                entry(key_id="kA", seconds=T0, method=98),
            ]
        )
    )
    assert (service.entries, service.unattributed, usage.recorded) == (4, 0, 2)
    [skipped] = [r for r in caplog.records if r.getMessage() == "access log entries skipped"]
    assert (skipped.error, skipped.skipped) == ("KeyError", 2)  # type: ignore[attr-defined]

    async def messages() -> Any:
        yield b"\xff\xff not a message"
        yield message([entry(key_id="kB", seconds=T0)])

    assert asyncio.run(service.stream(messages(), None)) == b""  # type: ignore[arg-type]
    assert usage.recorded == 3
    assert {(k[0], r.count) for k, r in usage.rollups.items()} == {("kA", 2), ("kB", 1)}


PINNED_DIGEST = "1133e5dc25a398f03007f17e06342321ac4d3f76c538d24b8fdc5dc71276bb1d"
