"""The log redactor: no key, bearer token, X-API-Key or api_key value survives, on any path a
record takes (message, %-arguments, extras, exceptions) in either format."""

from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authz.keys import format as keys
from authz.settings import Settings
from authz.telemetry import logs as telemetry

pytestmark = pytest.mark.unit


def emit(log_format: str, call: object) -> str:
    stream = io.StringIO()
    logger = logging.getLogger(f"test.redaction.{log_format}")
    logger.handlers = [telemetry.log_handler(Settings(log_format=log_format), stream)]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    call(logger)  # type: ignore[operator]
    return stream.getvalue()


def calls(token: str) -> list[object]:
    def raising(logger: logging.Logger) -> None:
        try:
            raise RuntimeError(f"boom {token}")
        except RuntimeError:
            logger.exception("failed")

    return [
        lambda lg: lg.info("key %s", token),
        lambda lg: lg.warning(f"header Authorization: Bearer {token}"),
        lambda lg: lg.error("x", extra={"header": token, "nested": f"x-api-key={token}"}),
        lambda lg: lg.info("GET /api?api_key=%s&x=1", token),
        lambda lg: lg.info("%(k)s", {"k": token}),
        raising,
    ]


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_every_call_shape_is_redacted(log_format: str) -> None:
    token = keys.generate("live").token
    secret = keys.parse(token).secret  # type: ignore[union-attr]
    for call in calls(token):
        output = emit(log_format, call)
        assert output  # text lines omit extras; JSON lines carry them, redacted
        assert telemetry.REDACTED in output or log_format == "text"
        assert token not in output and secret not in output


def test_json_lines_are_objects_with_extras() -> None:
    output = emit("json", lambda lg: lg.warning("redis unavailable", extra={"error": "Timeout"}))
    entry = json.loads(output)
    assert entry["message"] == "redis unavailable" and entry["error"] == "Timeout"
    assert entry["level"] == "warning"


@pytest.mark.parametrize(
    "text",
    [
        "Bearer sk-anything.at_all",
        "bearer\tabc",
        "X-API-Key: abc123",
        "x-api-key=abc123",
        "https://gw/api?api_key=abc123&x=1",
        "authorization: Basic dXNlcjpwYXNz",
    ],
)
def test_other_credential_shapes(text: str) -> None:
    redacted = telemetry.redact(text)
    assert telemetry.REDACTED in redacted
    for secret in ("abc123", "anything", "dXNlcjpwYXNz"):
        assert secret not in redacted


@given(
    st.text(max_size=40),
    st.text(max_size=40),
    st.sampled_from(["live", "test"]),
    st.integers(min_value=-3, max_value=3),
)
def test_keys_mangled_or_embedded_never_survive(
    before: str, after: str, env: str, cut: int
) -> None:
    token = keys.generate(env).token
    mangled = token[:cut] if cut < 0 else token + "x" * cut
    redacted = telemetry.redact(before + mangled + after)
    secret = keys.parse(token).secret  # type: ignore[union-attr]
    assert secret[:20] not in redacted


def test_plain_text_is_untouched() -> None:
    assert telemetry.redact("authz serving on 9191") == "authz serving on 9191"
