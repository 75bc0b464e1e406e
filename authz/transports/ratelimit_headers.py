"""The ``x-ratelimit-*`` and ``retry-after`` headers of an in-Check limit, on both transports.

Both transports cache their encoded responses per (key id, version); the limit's numbers change
with every request, so they are appended to the cached bytes rather than re-encoding the whole
response (measured in ``bench/micro.py``):

* gRPC: protobuf merges concatenated messages (repeated fields append), so the cached
  ``CheckResponse`` followed by a tiny ``CheckResponse`` holding only the headers parses as one
  response with them. The tail is encoded by hand below; field numbers come from the descriptors.
* HTTP: the headers go in front of the blank line that ends the cached head.
"""

from __future__ import annotations

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import (
    CheckResponse,
    DeniedHttpResponse,
    OkHttpResponse,
)

from authz.ratelimit.gcra import Verdict, ceil_seconds
from authz.transports import wire

LIMIT_HEADER, REMAINING_HEADER, RESET_HEADER = NAMES = wire.RATE_LIMIT_RESPONSE_HEADERS
RETRY_AFTER_HEADER = "retry-after"
DENIAL_NAMES = (*NAMES, RETRY_AFTER_HEADER)  # the 429 adds retry-after


def header_pairs(verdict: Verdict) -> list[tuple[str, str]]:
    """Limit per hour, requests left in the burst, seconds until it is full; retry-after on 429."""
    pairs = [
        (LIMIT_HEADER, str(verdict.limit.per_hour)),
        (REMAINING_HEADER, str(max(0, verdict.remaining))),
        (RESET_HEADER, str(ceil_seconds(verdict.reset_after))),
    ]
    if not verdict.allowed:
        pairs.append((RETRY_AFTER_HEADER, str(max(1, ceil_seconds(verdict.retry_after)))))
    return pairs


# --- gRPC: a hand-encoded CheckResponse tail --------------------------------------------------


def _number(message: type, name: str) -> int:
    return int(message.DESCRIPTOR.fields_by_name[name].number)  # type: ignore[attr-defined]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


_KEY = _number(HeaderValue, "key")
_VALUE = _number(HeaderValue, "value")
_HEADER = _number(HeaderValueOption, "header")
_APPEND = _varint(_number(HeaderValueOption, "append_action") << 3) + _varint(
    HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
)
_OK = _number(CheckResponse, "ok_response")
_DENIED = _number(CheckResponse, "denied_response")
_OK_HEADERS = _number(OkHttpResponse, "response_headers_to_add")
_DENIED_HEADERS = _number(DeniedHttpResponse, "headers")
_KEYS = {name: _field(_KEY, name.encode()) for name in DENIAL_NAMES}


def _options(field: int, verdict: Verdict) -> bytes:
    return b"".join([_option(field, name, value) for name, value in header_pairs(verdict)])


def _option(field: int, name: str, value: str) -> bytes:
    """One HeaderValueOption field. Names and values (digits) are short, so every length here is
    one byte and the tags are constants (per request this is the hot part: kept to one join)."""
    key, raw = _KEYS[name], value.encode()
    header_len = len(key) + 2 + len(raw)
    option_len = 2 + header_len + len(_APPEND)
    if option_len >= 0x80:  # never with our names and digit values; stay correct regardless
        return _field(field, _field(_HEADER, key + _field(_VALUE, raw)) + _APPEND)
    return b"".join(
        [
            bytes((field << 3 | 2, option_len, _HEADER << 3 | 2, header_len)),
            key,
            bytes((_VALUE << 3 | 2, len(raw))),
            raw,
            _APPEND,
        ]
    )


def grpc_tail(verdict: Verdict) -> bytes:
    """Bytes to append to a cached CheckResponse: ok → response_headers_to_add (to the client),
    denied → the DeniedHttpResponse's headers."""
    if verdict.allowed:
        return _field(_OK, _options(_OK_HEADERS, verdict))
    return _field(_DENIED, _options(_DENIED_HEADERS, verdict))


# --- HTTP: headers spliced into the cached head -----------------------------------------------


def http_with_headers(response: bytes, verdict: Verdict) -> bytes:
    """The cached HTTP response with the limit headers before the blank line ending its head."""
    end = response.index(b"\r\n\r\n") + 2
    extra = "".join(f"{name}: {value}\r\n" for name, value in header_pairs(verdict))
    return response[:end] + extra.encode("ascii") + response[end:]
