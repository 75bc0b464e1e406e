"""Property tests of the key format (authz/keys.py): round trip, checksum, no leaks."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authz.keys import format as keys

ENVS = st.sampled_from(keys.ENVIRONMENTS)
BASE62 = keys.ALPHABET
LEGAL = BASE62 + "_"


@st.composite
def new_keys(draw: st.DrawFn) -> keys.NewKey:
    env = draw(ENVS)
    key_id = draw(st.text(BASE62, min_size=keys.ID_LENGTH, max_size=keys.ID_LENGTH))
    return keys.generate(env, key_id)


@given(new_keys())
def test_every_generated_key_parses_back(new: keys.NewKey) -> None:
    assert len(new.token) == keys.KEY_LENGTH
    assert keys.parse(new.token) == new.parsed
    assert re.fullmatch(keys.KEY_PATTERN, new.token)
    assert new.token.startswith(new.parsed.display_prefix + "_")


@given(new_keys(), st.data())
def test_any_single_character_change_fails(new: keys.NewKey, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, keys.KEY_LENGTH - 1))
    replacement = data.draw(st.sampled_from(LEGAL).filter(lambda c: c != new.token[position]))
    changed = new.token[:position] + replacement + new.token[position + 1 :]
    assert keys.parse(changed) is None


@given(new_keys(), st.integers(1, keys.KEY_LENGTH))
def test_truncation_fails(new: keys.NewKey, cut: int) -> None:
    assert keys.parse(new.token[:-cut]) is None


@given(new_keys(), st.text(LEGAL + string.punctuation, min_size=1, max_size=20))
def test_extension_fails(new: keys.NewKey, suffix: str) -> None:
    assert keys.parse(new.token + suffix) is None
    assert keys.parse(suffix + new.token) is None


@given(new_keys(), st.data())
def test_swapping_two_characters_fails_unless_equal(new: keys.NewKey, data: st.DataObject) -> None:
    first = data.draw(st.integers(len("hk_live_"), keys.KEY_LENGTH - 2))
    token = new.token
    if token[first] == token[first + 1]:
        return
    swapped = token[:first] + token[first + 1] + token[first] + token[first + 2 :]
    assert keys.parse(swapped) is None


def _secret_fragments(secret: str) -> list[str]:
    """Every 8-character window of the secret: any of them in output would be a leak."""
    return [secret[i : i + 8] for i in range(len(secret) - 7)]


@given(new_keys())
def test_repr_and_str_never_show_the_secret(new: keys.NewKey) -> None:
    shown = " ".join([repr(new), str(new), repr(new.parsed), str(new.parsed), f"{new!r}"])
    assert new.parsed.key_id in shown
    for fragment in _secret_fragments(new.parsed.secret):
        assert fragment not in shown


@given(new_keys(), st.data())
def test_parse_never_raises_or_echoes(new: keys.NewKey, data: st.DataObject) -> None:
    """parse returns None on garbage, so no exception message can carry the input."""
    position = data.draw(st.integers(0, keys.KEY_LENGTH - 1))
    mangled = new.token[:position] + "!" + new.token[position + 1 :]
    assert keys.parse(mangled) is None


@given(st.text(max_size=300))
def test_parse_rejects_arbitrary_text(text: str) -> None:
    assert keys.parse(text) is None or re.fullmatch(keys.KEY_PATTERN, text)


def test_generate_rejects_bad_arguments_without_secret_bytes() -> None:
    with pytest.raises(ValueError, match="environment"):
        keys.generate("prod")
    with pytest.raises(ValueError, match="12 base62"):
        keys.generate("live", "short")


def test_checksum_is_crc32_in_base62() -> None:
    assert len(keys.checksum("hk_live_x")) == keys.CHECKSUM_LENGTH
    assert keys.checksum("a") != keys.checksum("b")


@settings(max_examples=5, deadline=None)
@given(new_keys())
def test_hash_and_verify(new: keys.NewKey) -> None:
    stored = keys.hash_secret(new.parsed.secret, 4)
    assert new.parsed.secret not in stored
    assert keys.verify_secret(new.parsed.secret, stored)
    other = keys.generate(new.parsed.env)
    assert not keys.verify_secret(other.parsed.secret, stored)
    assert not keys.verify_secret(new.parsed.secret, "not-a-bcrypt-hash")


def test_fingerprints() -> None:
    new = keys.generate("live")
    a = keys.fingerprint(b"pepper", new.parsed)
    assert keys.same_fingerprint(a, keys.fingerprint(b"pepper", new.parsed))
    assert not keys.same_fingerprint(a, keys.fingerprint(b"other", new.parsed))


def test_docs_publish_the_exact_pattern() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "keys.md").read_text()
    assert f"\n{keys.KEY_PATTERN}\n" in doc
