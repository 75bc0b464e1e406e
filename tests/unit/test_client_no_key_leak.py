"""No byte of the key's secret in any log line, warning, exception text or status repr the client
produces — a property test over random valid keys, through every path that holds a key: settings
validation, each gateway refusal, failures whose foreign texts embed the key, each mode."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hokusai import connection, errors, keyformat, mlflow_auth, reasons
from hokusai.gateway import Reply, Unreachable, Untrusted
from hokusai.mlflow_errors import translate
from hokusai.settings import Settings
from tests.support.client import FakeTransport, Waits, fake_policy, isolated_state, json_reply

isolated = pytest.fixture(isolated_state)
pytestmark = pytest.mark.usefixtures("isolated")
WINDOW = 8  # no 8 consecutive characters of the secret may appear anywhere
keys = st.builds(
    keyformat.compose,
    st.sampled_from(keyformat.ENVIRONMENTS),
    st.text(alphabet=keyformat.ALPHABET, min_size=12, max_size=12),
    st.integers(min_value=0, max_value=2**256 - 1),
)


def leaks(new: keyformat.NewKey, text: str) -> list[str]:
    """Windows of the secret found in ``text`` once the public display prefix is taken out (a
    key id of zeros would otherwise "leak" a secret of zeros)."""
    secret = new.parsed.secret
    text = text.replace(new.parsed.display_prefix, "hk_<prefix>")
    return [
        secret[i : i + WINDOW]
        for i in range(len(secret) - WINDOW + 1)
        if secret[i : i + WINDOW] in text
    ]


@contextmanager
def captured() -> Iterator[list[str]]:
    """Every log record (any logger) and warning emitted inside the block, as text."""
    texts: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            texts.append(self.format(record))

    handler, root = Keep(logging.DEBUG), logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            yield texts
        texts += [str(w.message) for w in seen]
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def shown(value: object) -> str:
    if isinstance(value, BaseException):
        return f"{value}\n{value!r}\n{getattr(value, 'steps', '')}{getattr(value, 'docs_url', '')}"
    return repr(value)


def malformed(token: str) -> list[str]:
    typo = token[:30] + ("A" if token[30] != "A" else "B") + token[31:]
    return [token[:-1], token + "x", typo, "Bearer " + token, f" {typo}\n", token.replace("_", "-")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(new=keys)
def test_settings_errors(new: keyformat.NewKey) -> None:
    token = new.token
    texts: list[str] = []
    with captured() as logged:
        for bad in malformed(token):
            with pytest.raises(errors.ConfigurationError) as caught:
                Settings.resolve(bad, "https://gw", environ={})
            texts.append(shown(caught.value))
        for url in (f"https://u:{token}@gw", f"https://gw/?api_key={token}", f"http://{token}"):
            with pytest.raises(errors.ConfigurationError) as caught:
                Settings.resolve(token, url, environ={})
            texts.append(shown(caught.value))
        texts.append(repr(Settings.resolve(token, "https://gw", environ={})))
    assert not leaks(new, "\n".join(texts + logged))


REFUSALS = [reason for reason, row in reasons.TABLE.items() if row.status and row.status >= 400]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    new=keys,
    reason=st.sampled_from(REFUSALS),
    where=st.sampled_from(
        ["/api/v1/auth/whoami", "/api/mlflow/api/2.0/mlflow/experiments/search", "/health"]
    ),
)
def test_every_refusal_and_failure(new: keyformat.NewKey, reason: str, where: str) -> None:
    token = new.token
    chatty = f"GET https://gw/x?api_key={token} with Authorization: Bearer {token} failed"
    body = json.dumps({"error": reason, "message": "refused", "docs": f"/docs/errors#{reason}"})
    outcomes: list[object] = []
    with captured() as logged:
        for answer in (
            json_reply(reasons.TABLE[reason].status or 500, body, {"retry-after": "1"}),
            Unreachable(chatty),
            Untrusted(chatty),
        ):
            for flags in ({}, {"fallback": True}, {"optional": True}):
                routes: dict[str, list[object]] = {
                    "/health": [Reply(200)],
                    "/api/mlflow/health/mlflow": [Reply(200)],
                    "/api/v1/auth/whoami": [Reply(200, b"{}")],
                    "/api/mlflow/api/2.0/mlflow/experiments/search": [Reply(200)],
                }
                routes[where] = [answer]
                outcomes.append(_connect(token, FakeTransport(routes), flags))  # type: ignore[arg-type]
        context = errors.Context("https://gw", reasons.Names(), new.parsed.display_prefix)
        outcomes.append(translate(RuntimeError(chatty), context))
        outcomes.append(translate(ConnectionError(chatty), context))
        mlflow_auth.use_key(token)
        outcomes.append(mlflow_auth.BearerKey())
    assert not leaks(new, "\n".join([shown(o) for o in outcomes] + logged))


def _connect(token: str, transport: FakeTransport, flags: dict[str, bool]) -> object:
    connection._ANNOUNCED.clear()
    try:
        return connection.connect(
            Settings.resolve(token, "https://gw", environ=os.environ, **flags),  # type: ignore[arg-type]
            transport,
            fake_policy(Waits()),
        )
    except errors.HokusaiError as exc:
        return exc
