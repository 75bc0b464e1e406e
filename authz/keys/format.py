"""The API key on the server: its format from the client, its hashing and fingerprints here.

The format — ``hk_<env>_<id>_<secret><checksum>``, its constants, ``KEY_PATTERN``, ``parse``,
``checksum``, ``display_prefix`` and ``generate`` — is defined once, in the client distribution
(``hokusai.keyformat``, stdlib only), because the client checks a key offline before it sends
anything and the server may depend on the client, never the reverse. This module re-exports those
names unchanged (the same objects: ``parse`` on the hot path is the client's function, with no
wrapper), so the server imports the key from one place.

What only the server does stays here: the bcrypt hash of the secret that the database stores
(``hash_secret``, ``verify_secret``) and the HMAC-SHA256 fingerprint under the server's pepper that
makes every check after the first one a constant-time compare (``fingerprint``, ``Fingerprinter``,
``same_fingerprint``).
"""

from __future__ import annotations

import hashlib
import hmac

import bcrypt

from hokusai.keyformat import (
    ALPHABET,
    CHECKSUM_LENGTH,
    ENVIRONMENTS,
    ID_LENGTH,
    KEY_ID_PATTERN,
    KEY_LENGTH,
    KEY_PATTERN,
    MAX_CREDENTIAL_LENGTH,
    SECRET_BYTES,
    SECRET_LENGTH,
    NewKey,
    ParsedKey,
    checksum,
    display_prefix,
    generate,
    new_key_id,
    parse,
)

__all__ = [
    "ALPHABET",
    "CHECKSUM_LENGTH",
    "ENVIRONMENTS",
    "ID_LENGTH",
    "KEY_ID_PATTERN",
    "KEY_LENGTH",
    "KEY_PATTERN",
    "MAX_CREDENTIAL_LENGTH",
    "SECRET_BYTES",
    "SECRET_LENGTH",
    "Fingerprinter",
    "NewKey",
    "ParsedKey",
    "checksum",
    "display_prefix",
    "fingerprint",
    "generate",
    "hash_secret",
    "new_key_id",
    "parse",
    "same_fingerprint",
    "verify_secret",
]


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


# Constant-time equality of two fingerprints (the hot path's compare: the C function itself).
same_fingerprint = hmac.compare_digest
