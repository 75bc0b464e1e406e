"""The server's half of the key (authz/keys/format.py): the format is the client's
(hokusai.keyformat, tested in tests/unit/test_client_keyformat.py) and re-exported unchanged
(tests/unit/test_client_server.py); bcrypt hashing, HMAC fingerprints and the published pattern
are tested here."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from authz.keys import format as keys


@st.composite
def new_keys(draw: st.DrawFn) -> keys.NewKey:
    env = draw(st.sampled_from(keys.ENVIRONMENTS))
    return keys.generate(env, draw(st.text(keys.ALPHABET, min_size=12, max_size=12)))


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
