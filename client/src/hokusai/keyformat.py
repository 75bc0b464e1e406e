"""The API key's format — its one definition, shared by the client and the gateway (stdlib only).

Format: ``hk_<env>_<id>_<secret><checksum>``

* ``env`` — ``live`` or ``test``;
* ``id`` — 12 base62 characters, random and public: the lookup handle, safe to log and show;
* ``secret`` — 32 bytes from ``secrets``, base62, left-padded to 43 characters;
* ``checksum`` — CRC32 of everything before it, base62, 6 characters, so a mistyped or random
  string is rejected without any I/O and secret scanners can match keys with ``KEY_PATTERN``.

Every key is exactly ``KEY_LENGTH`` (70) characters of ``[A-Za-z0-9_]``: URL-safe and selectable
with one double-click. The client checks a key here before it sends anything; the gateway parses
with the same code. The server may import this module; this module imports nothing of the server.

Neither ``ParsedKey`` nor ``NewKey`` lets the secret into a ``repr``, so logging or raising with one
of them cannot leak it. Hashing and verification (bcrypt, HMAC) stay on the server.
"""

from __future__ import annotations

import re
import secrets
import zlib
from dataclasses import dataclass, field

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
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
_PREFIX = re.compile(rf"hk_(live|test)_([0-9A-Za-z]{{{ID_LENGTH}}})_")


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


def compose(env: str, key_id: str, secret_number: int) -> NewKey:
    """The key for these parts (``secret_number`` < 2**256): what ``generate`` does with random
    ones, exposed so tests can walk the whole key space."""
    if env not in ENVIRONMENTS:
        raise ValueError(f"unknown key environment {env!r}: expected live or test")
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ValueError("a key id is 12 base62 characters")
    secret = _base62(secret_number, SECRET_LENGTH)
    body = f"hk_{env}_{key_id}_{secret}"
    return NewKey(ParsedKey(env, key_id, secret), body + checksum(body))


def generate(env: str, key_id: str | None = None) -> NewKey:
    """A new random key for ``env``; ``key_id`` is random unless given."""
    number = int.from_bytes(secrets.token_bytes(SECRET_BYTES), "big")
    return compose(env, key_id or new_key_id(), number)


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


def label(text: str) -> str:
    """How to name a credential in a message: its display prefix when the public part is intact,
    else "the key" — never anything of the secret."""
    match = _PREFIX.match(text.strip())
    return display_prefix(match[1], match[2]) if match else "the key"


def problem(text: str) -> str:
    """Why ``text`` is not a key, without showing any of it beyond a public prefix."""
    if text != text.strip():
        return "it has leading or trailing whitespace (a newline from a file?)"
    if text.lower().startswith("bearer "):
        return "it includes 'Bearer ': the client adds that itself"
    if not text.startswith(("hk_live_", "hk_test_")):
        return "it does not start with hk_live_ or hk_test_"
    if len(text) != KEY_LENGTH:
        return f"it is {len(text)} characters long; a key has {KEY_LENGTH} (truncated?)"
    if not re.fullmatch(KEY_PATTERN, text):
        return "it contains characters other than letters, digits and _"
    return "its checksum does not match: a character was mistyped or changed"
