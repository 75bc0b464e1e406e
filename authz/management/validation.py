"""Validation of key-management input: the one place each rule is written.

Names, e-mails, environments, limits, networks, metadata and key references. Front ends parse
their own syntax (argparse, JSON) and hand the values to these functions (through the service);
every failure is an ``InvalidInput`` whose one-line message never echoes a whole key.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence

from authz.errors import InvalidInput
from authz.keys import format as key_format

MAX_NAME_LENGTH = 200
MAX_EMAIL_LENGTH = 320
MAX_ALLOWED_IPS = 64
MAX_METADATA_ENTRIES = 32
MAX_METADATA_VALUE = 256
MAX_LIMIT = 2**31 - 1  # the columns are integers
MAX_REASON_LENGTH = 500
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_METADATA_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_DISPLAY_PREFIX = re.compile(r"hk_(?:live|test)_([0-9A-Za-z]{12})")


def parse_key_ref(text: str) -> str:
    """A key id from a 12-character id or a display prefix ``hk_live_<id>``; no I/O.

    The input is never echoed: someone may paste a whole key by mistake.
    """
    raw = text.strip()
    if key_format.KEY_ID_PATTERN.fullmatch(raw):
        return raw
    match = _DISPLAY_PREFIX.fullmatch(raw)
    if match:
        return match[1]
    if key_format.parse(raw) is not None:
        raise InvalidInput("that is a whole key, not a key id: pass its id (hk_live_<id>) only")
    raise InvalidInput("malformed key id: expected 12 base62 characters or hk_<env>_<id>")


def validate_email(email: str) -> str:
    value = email.strip().lower()
    if len(value) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(value):
        raise InvalidInput(f"malformed e-mail address {email.strip()[:60]!r}")
    return value


def validate_name(name: str) -> str:
    value = name.strip()
    if not value:
        raise InvalidInput("the key name must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInput(f"the key name is longer than {MAX_NAME_LENGTH} characters")
    if any(not ch.isprintable() for ch in value):
        raise InvalidInput("the key name contains control characters")
    return value


def validate_env(env: str) -> str:
    if env not in key_format.ENVIRONMENTS:
        raise InvalidInput(f"unknown key environment {env[:20]!r}: expected live or test")
    return env


def validate_limit(value: int | None, what: str) -> int | None:
    """``None`` means the gateway default; 0 means unlimited (rate) or no burst."""
    if value is not None and not 0 <= value <= MAX_LIMIT:
        raise InvalidInput(f"{what} must be between 0 and {MAX_LIMIT}, not {value}")
    return value


def validate_cidrs(values: Sequence[str]) -> tuple[str, ...]:
    """Normalised networks; a bare address is a /32 (/128). Host bits set is an error, not
    silently masked: ``10.0.0.1/8`` would widen access to the whole /8."""
    result: list[str] = []
    for raw in values:
        text = raw.strip()
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError:
            hint = _host_bits_hint(text)
            raise InvalidInput(f"bad CIDR {text[:50]!r}{hint}") from None
        if str(network) not in result:
            result.append(str(network))
    if len(result) > MAX_ALLOWED_IPS:
        raise InvalidInput(f"at most {MAX_ALLOWED_IPS} allowed networks per key")
    return tuple(result)


def _host_bits_hint(text: str) -> str:
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return ""
    return f": host bits are set (did you mean {network}?)"


def parse_metadata(items: Sequence[str]) -> dict[str, str]:
    """``k=v`` pairs into a mapping (the last of a repeated key wins), then validated."""
    result: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"bad metadata {item[:60]!r}: expected key=value")
        result[name.strip()] = value
    return validate_metadata(result)


def validate_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise InvalidInput(f"at most {MAX_METADATA_ENTRIES} metadata entries per key")
    for name, value in metadata.items():
        if not isinstance(name, str) or not _METADATA_KEY.fullmatch(name):
            raise InvalidInput(
                f"bad metadata key {str(name)[:60]!r}: use 1-64 of A-Z a-z 0-9 _ . : -"
            )
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE:
            raise InvalidInput(
                f"metadata {name!r}: value must be text of at most {MAX_METADATA_VALUE} characters"
            )
    return dict(metadata)
