"""The key format (hokusai.keyformat: its one definition, which the server's authz/keys/format.py
re-exports): round trip, checksum, refusals, no leaks, and the explanations the client gives."""

from __future__ import annotations

import re
import string
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hokusai import keyformat

ENVS = st.sampled_from(keyformat.ENVIRONMENTS)
BASE62 = keyformat.ALPHABET
LEGAL = BASE62 + "_"
IDS = st.text(alphabet=BASE62, min_size=keyformat.ID_LENGTH, max_size=keyformat.ID_LENGTH)


@st.composite
def new_keys(draw: st.DrawFn) -> keyformat.NewKey:
    return keyformat.generate(draw(ENVS), draw(IDS))


@given(env=ENVS, key_id=IDS, secret=st.integers(min_value=0, max_value=2**256 - 1))
def test_every_composed_key_parses_back(env: str, key_id: str, secret: int) -> None:
    new = keyformat.compose(env, key_id, secret)
    assert len(new.token) == keyformat.KEY_LENGTH
    assert keyformat.parse(new.token) == new.parsed
    assert (new.parsed.env, new.parsed.key_id) == (env, key_id)
    assert re.fullmatch(keyformat.KEY_PATTERN, new.token)
    assert new.token.startswith(new.parsed.display_prefix + "_")


@given(new_keys(), st.data())
def test_any_single_character_change_fails(new: keyformat.NewKey, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, keyformat.KEY_LENGTH - 1))
    replacement = data.draw(st.sampled_from(LEGAL).filter(lambda c: c != new.token[position]))
    changed = new.token[:position] + replacement + new.token[position + 1 :]
    assert keyformat.parse(changed) is None


@given(new_keys(), st.integers(1, keyformat.KEY_LENGTH))
def test_truncation_fails(new: keyformat.NewKey, cut: int) -> None:
    assert keyformat.parse(new.token[:-cut]) is None


@given(new_keys(), st.text(LEGAL + string.punctuation, min_size=1, max_size=20))
def test_extension_fails(new: keyformat.NewKey, suffix: str) -> None:
    assert keyformat.parse(new.token + suffix) is None
    assert keyformat.parse(suffix + new.token) is None


@given(new_keys(), st.data())
def test_swapping_two_characters_fails_unless_equal(
    new: keyformat.NewKey, data: st.DataObject
) -> None:
    first = data.draw(st.integers(len("hk_live_"), keyformat.KEY_LENGTH - 2))
    token = new.token
    if token[first] == token[first + 1]:
        return
    swapped = token[:first] + token[first + 1] + token[first] + token[first + 2 :]
    assert keyformat.parse(swapped) is None


def test_checksum_decoding_accepts_exactly_the_encoded_checksum() -> None:
    """``parse`` compares the decoded checksum with the CRC (three lookups, the hot path's
    shortcut); that is the same test as comparing the encoded strings."""
    length = keyformat.CHECKSUM_LENGTH
    for _ in range(200):
        new = keyformat.generate("test")
        body, check = new.token[:-length], new.token[-length:]
        assert keyformat._checksum_value(check) == zlib.crc32(body.encode())
        assert check == keyformat.checksum(body)
        for position in range(length):
            for char in "0aZ":
                mutated = check[:position] + char + check[position + 1 :]
                assert (keyformat.parse(body + mutated) is not None) == (mutated == check)


@given(st.text(max_size=300))
def test_parse_rejects_arbitrary_text(text: str) -> None:
    assert keyformat.parse(text) is None or re.fullmatch(keyformat.KEY_PATTERN, text)


def _secret_fragments(secret: str) -> list[str]:
    """Every 8-character window of the secret: any of them in output would be a leak."""
    return [secret[i : i + 8] for i in range(len(secret) - 7)]


@given(new_keys())
def test_repr_and_str_never_show_the_secret(new: keyformat.NewKey) -> None:
    shown = " ".join([repr(new), str(new), repr(new.parsed), str(new.parsed), f"{new!r}"])
    assert new.parsed.key_id in shown
    for fragment in _secret_fragments(new.parsed.secret):
        assert fragment not in shown


@given(new_keys(), st.data())
def test_parse_never_raises_or_echoes(new: keyformat.NewKey, data: st.DataObject) -> None:
    """parse returns None on garbage, so no exception message can carry the input."""
    position = data.draw(st.integers(0, keyformat.KEY_LENGTH - 1))
    mangled = new.token[:position] + "!" + new.token[position + 1 :]
    assert keyformat.parse(mangled) is None


def test_generate_and_compose_refuse_bad_parts() -> None:
    with pytest.raises(ValueError, match="environment"):
        keyformat.generate("prod")
    with pytest.raises(ValueError, match="12 base62"):
        keyformat.generate("live", "short")
    with pytest.raises(ValueError, match="environment"):
        keyformat.compose("prod", "A" * 12, 1)
    with pytest.raises(ValueError, match="12 base62"):
        keyformat.compose("live", "short", 1)


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
