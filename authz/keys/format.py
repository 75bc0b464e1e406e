"""The API key: its format, generation, parsing, hashing and verification — defined only here.

Format: ``hk_<env>_<id>_<secret><checksum>``

* ``env`` — ``live`` or ``test``;
* ``id`` — 12 base62 characters, random and public: the lookup handle, safe to log and show;
* ``secret`` — 32 bytes from ``secrets``, base62, left-padded to 43 characters;
* ``checksum`` — CRC32 of everything before it, base62, 6 characters, so a mistyped or random
  string is rejected without any I/O and secret scanners can match keys with ``KEY_PATTERN``.

Every key is exactly ``KEY_LENGTH`` (70) characters of ``[A-Za-z0-9_]``: URL-safe and selectable
with one double-click. The database stores a bcrypt hash of the secret, never the key.

Neither ``ParsedKey`` nor ``NewKey`` lets the secret into a ``repr``, so logging or raising with one
of them cannot leak it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass, field

import bcrypt

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
ENVIRONMENTS = ("live", "test")
ID_LENGTH = 12
SECRET_BYTES = 32
SECRET_LENGTH = 43  # ceil(256 / log2(62))
CHECKSUM_LENGTH = 6  # ceil(32 / log2(62))
KEY_LENGTH = len("hk_live_") + ID_LENGTH + 1 + SECRET_LENGTH + CHECKSUM_LENGTH
MAX_CREDENTIAL_LENGTH = 256  # anything longer is rejected before any parsing

# Published for secret scanners (GitHub, gitleaks, trufflehog): matches every key, and the CRC32
# checksum lets a scanner confirm a hit without calling us.
KEY_PATTERN = (
    rf"\bhk_(?:live|test)_[0-9A-Za-z]{{{ID_LENGTH}}}"
    rf"_[0-9A-Za-z]{{{SECRET_LENGTH + CHECKSUM_LENGTH}}}\b"
)
_FULL = re.compile(
    rf"hk_(live|test)_([0-9A-Za-z]{{{ID_LENGTH}}})_([0-9A-Za-z]{{{SECRET_LENGTH}}})"
    rf"([0-9A-Za-z]{{{CHECKSUM_LENGTH}}})"
)
KEY_ID_PATTERN = re.compile(rf"[0-9A-Za-z]{{{ID_LENGTH}}}")


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(ALPHABET[digit])
    if number:
        raise ValueError("number does not fit the width")
    return "".join(reversed(chars))


def checksum(body: str) -> str:
    """The 6-character CRC32 checksum of a key body (everything before the checksum)."""
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


# Two base62 digits → their value: decoding a checksum takes three lookups where encoding the
# CRC (``checksum``) takes six divmods; 6-digit base62 is a bijection, so comparing the decoded
# value with the CRC is the same test as comparing the strings.
_PAIRS = {a + b: i * 62 + j for i, a in enumerate(ALPHABET) for j, b in enumerate(ALPHABET)}


def _checksum_value(check: str) -> int:
    return (_PAIRS[check[0:2]] * 3844 + _PAIRS[check[2:4]]) * 3844 + _PAIRS[check[4:6]]


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """A credential that passed the format and checksum checks. ``repr`` hides the secret."""

    env: str
    key_id: str
    secret: str = field(repr=False)

    @property
    def display_prefix(self) -> str:
        return display_prefix(self.env, self.key_id)


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: the token is shown to its owner once and then forgotten."""

    parsed: ParsedKey
    token: str = field(repr=False)


def display_prefix(env: str, key_id: str) -> str:
    """What lists and logs show for a key: environment and public id, never secret bytes."""
    return f"hk_{env}_{key_id}"


def new_key_id() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(ID_LENGTH))


def generate(env: str, key_id: str | None = None) -> NewKey:
    """A new random key for ``env``; ``key_id`` is random unless given."""
    if env not in ENVIRONMENTS:
        raise ValueError(f"unknown key environment {env!r}: expected live or test")
    key_id = key_id or new_key_id()
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ValueError("a key id is 12 base62 characters")
    secret = _base62(int.from_bytes(secrets.token_bytes(SECRET_BYTES), "big"), SECRET_LENGTH)
    body = f"hk_{env}_{key_id}_{secret}"
    return NewKey(ParsedKey(env, key_id, secret), body + checksum(body))


def parse(text: str) -> ParsedKey | None:
    """The key in ``text``, or None when it is not a well-formed, correctly checksummed key.

    No I/O and no allocation beyond one regex match: garbage costs about a microsecond.
    """
    if len(text) != KEY_LENGTH:
        return None
    match = _FULL.fullmatch(text)
    if match is None:
        return None
    env, key_id, secret, check = match.groups()
    if _checksum_value(check) != zlib.crc32(text[: KEY_LENGTH - CHECKSUM_LENGTH].encode("ascii")):
        return None
    return ParsedKey(env, key_id, secret)


def hash_secret(secret: str, cost: int) -> str:
    """bcrypt hash of the secret (seconds-scale work at high cost: call off the event loop)."""
    return bcrypt.hashpw(secret.encode("ascii"), bcrypt.gensalt(cost)).decode("ascii")


def verify_secret(secret: str, secret_hash: str) -> bool:
    """Constant-time bcrypt check of a secret against its stored hash."""
    try:
        return bcrypt.checkpw(secret.encode("ascii"), secret_hash.encode("ascii"))
    except ValueError:  # a corrupt stored hash never verifies
        return False


def fingerprint(pepper: bytes, key: ParsedKey) -> bytes:
    """HMAC-SHA256 of id and secret under the server pepper: the cheap check after a bcrypt one."""
    return hmac.new(pepper, f"{key.key_id}:{key.secret}".encode("ascii"), hashlib.sha256).digest()


class Fingerprinter:
    """``fingerprint`` for one pepper, with HMAC's keyed inner and outer SHA-256 states made once.

    HMAC (RFC 2104) is H((K ⊕ opad) ‖ H((K ⊕ ipad) ‖ m)); the two keyed prefixes fill one block
    each, so their hash states can be computed once and copied per message: 0.5 µs instead of
    1.2 µs for ``hmac.new`` (which re-derives them on every call). Same bytes as ``fingerprint``.
    """

    _BLOCK = 64  # SHA-256's block size

    def __init__(self, pepper: bytes) -> None:
        key = hashlib.sha256(pepper).digest() if len(pepper) > self._BLOCK else pepper
        key = key.ljust(self._BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __call__(self, key: ParsedKey) -> bytes:
        inner = self._inner.copy()
        inner.update(f"{key.key_id}:{key.secret}".encode("ascii"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def same_fingerprint(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
