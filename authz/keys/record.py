"""The key record the check path works from: what the caches hold and the store returns.

It carries everything a decision needs (hash, status timestamps, scopes, networks, limits, when
its user was disabled), so a cached record is checked on every request — expiry and rotation
grace fire no notification.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ALLOWED_MEMO_SIZE = 4096  # (allowlist, address) answers kept; cleared whole when full
# (id of a networks tuple, address) → (that tuple, allowed?). Holding the tuple keeps its id
# from being reused by another allowlist while the entry exists.
_ALLOWED: dict[tuple[int, str], tuple[tuple[Network, ...], bool]] = {}
# Scope sets and allowlists are shared by many keys: records keep one copy of each (with 100 000
# keys cached that is ~600 bytes a key: a frozenset, its strings, ipaddress objects). Bounded:
# past SHARED_MAX distinct values, new ones are simply not shared.
SHARED_MAX = 10_000
_SCOPE_SETS: dict[frozenset[str], frozenset[str]] = {}
_NETWORK_LISTS: dict[tuple[Network, ...], tuple[Network, ...]] = {}


def _shared(table: dict[Any, Any], value: Any) -> Any:
    try:
        found = table.get(value)
    except TypeError:  # not hashable (a caller passed a list): keep it as given
        return value
    if found is not None:
        return found
    if len(table) < SHARED_MAX:
        table[value] = value
    return value


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    user_id: int
    env: str
    secret_hash: str = field(repr=False)
    scopes: frozenset[str]
    expires_at: float | None  # epoch seconds
    revoked_at: float | None
    networks: tuple[Network, ...]
    rate_limit_per_hour: int | None
    burst: int | None
    version: int
    disabled_at: float | None = None  # the key's user was disabled (``hokusai auth disable-user``)
    # For the central policy's check-time rules (authz/keys/policy.py): epoch seconds; 0: unknown.
    created_at: float = 0.0
    last_used_at: float | None = None

    @property
    def cache_id(self) -> str:
        return self.key_id

    def __post_init__(self) -> None:
        object.__setattr__(self, "scopes", _shared(_SCOPE_SETS, self.scopes))
        object.__setattr__(self, "networks", _shared(_NETWORK_LISTS, self.networks))

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def allows_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if not self.networks:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def allows_client(self, address: str) -> bool:
        """``allows_address`` for the text form the transports give; unreadable never matches.

        Memoised per (allowlist, address): parsing the address and testing each network costs
        ~2 µs, a check of a key with an allowlist pays it on every request otherwise.
        """
        networks = self.networks
        if not networks:
            return True
        memo_key = (id(networks), address)
        hit = _ALLOWED.get(memo_key)
        if hit is not None and hit[0] is networks:  # the tuple is held: its id is not reused
            return hit[1]
        try:
            allowed = self.allows_address(ipaddress.ip_address(address))
        except ValueError:
            allowed = False
        if len(_ALLOWED) >= ALLOWED_MEMO_SIZE:
            _ALLOWED.clear()
        _ALLOWED[memo_key] = (networks, allowed)
        return allowed

    def to_json(self) -> bytes:
        """Serialised form for the shared Redis cache (the hash is bcrypt's, never the secret)."""
        return json.dumps(
            {
                "k": self.key_id,
                "u": self.user_id,
                "e": self.env,
                "h": self.secret_hash,
                "s": sorted(self.scopes),
                "x": self.expires_at,
                "r": self.revoked_at,
                "n": [str(n) for n in self.networks],
                "l": self.rate_limit_per_hour,
                "b": self.burst,
                "v": self.version,
                "d": self.disabled_at,
                "c": self.created_at,
                "lu": self.last_used_at,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> KeyRecord:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            key_id=data["k"],
            user_id=int(data["u"]),
            env=data["e"],
            secret_hash=data["h"],
            scopes=frozenset(data["s"]),
            expires_at=data["x"],
            revoked_at=data["r"],
            networks=tuple(ipaddress.ip_network(n) for n in data["n"]),
            rate_limit_per_hour=data["l"],
            burst=data["b"],
            version=int(data["v"]),
            disabled_at=data.get("d"),
            created_at=float(data.get("c") or 0.0),
            last_used_at=data.get("lu"),
        )
