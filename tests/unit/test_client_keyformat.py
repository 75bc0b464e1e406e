"""hokusai.keyformat (the client's copy of the key format) against the server's
authz/keys/format.py: the same keys parse, the same garbage is refused, the same pattern is
published. In phase 2 the server imports it and this parity test becomes an identity
(tests/unit/test_client_phase2.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authz.keys import format as keys
from hokusai import keyformat

ALNUM = st.text(alphabet=keyformat.ALPHABET, min_size=12, max_size=12)


def test_constants_match_the_server() -> None:
    for name in (
        "ALPHABET",
        "ENVIRONMENTS",
        "ID_LENGTH",
        "SECRET_LENGTH",
        "CHECKSUM_LENGTH",
        "KEY_LENGTH",
        "MAX_CREDENTIAL_LENGTH",
        "KEY_PATTERN",
    ):
        assert getattr(keyformat, name) == getattr(keys, name), name


@given(
    env=st.sampled_from(keyformat.ENVIRONMENTS),
    key_id=ALNUM,
    secret=st.integers(min_value=0, max_value=2**256 - 1),
)
def test_every_composed_key_parses_on_both_sides(env: str, key_id: str, secret: int) -> None:
    new = keyformat.compose(env, key_id, secret)
    assert len(new.token) == keyformat.KEY_LENGTH
    assert keyformat.parse(new.token) == new.parsed
    server = keys.parse(new.token)
    assert server is not None
    assert (server.env, server.key_id, server.secret) == (env, key_id, new.parsed.secret)
    assert re.fullmatch(keyformat.KEY_PATTERN, new.token)


@given(text=st.text(max_size=80))
def test_garbage_is_refused_alike(text: str) -> None:
    assert (keyformat.parse(text) is None) == (keys.parse(text) is None)


def test_generate_and_mutations() -> None:
    token = keyformat.generate("test").token
    assert keys.parse(token) is not None
    for i in range(len(token)):
        changed = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        assert keyformat.parse(changed) is None
    assert keyformat.parse(token[:-1]) is None and keyformat.parse(token + "A") is None


def test_repr_never_shows_the_secret() -> None:
    new = keyformat.generate("live")
    assert new.parsed.secret not in repr(new) + repr(new.parsed)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("TOKEN\n", "whitespace"),
        ("Bearer TOKEN", "'Bearer '"),
        ("sk_x", "does not start"),
        ("TOKEN[:-3]", "67 characters"),
        ("TOKEN-", "characters other than"),
        ("TOKENtypo", "checksum does not match"),
    ],
)
def test_problem_explains_without_the_secret(text: str, why: str) -> None:
    token = keyformat.generate("live").token
    text = {
        "TOKEN\n": token + "\n",
        "Bearer TOKEN": "Bearer " + token,
        "sk_x": "sk" + token[2:],
        "TOKEN[:-3]": token[:-3],
        "TOKEN-": token[:40] + "-" + token[41:],
        "TOKENtypo": token[:30] + ("A" if token[30] != "A" else "B") + token[31:],
    }[text]
    assert why in keyformat.problem(text)
    assert keyformat.label(text) in (token[:20], "the key")
    assert token[21:64] not in keyformat.problem(text) + keyformat.label(text)


def test_compose_refuses_bad_parts() -> None:
    with pytest.raises(ValueError, match="environment"):
        keyformat.compose("prod", "A" * 12, 1)
    with pytest.raises(ValueError, match="12 base62"):
        keyformat.compose("live", "short", 1)
