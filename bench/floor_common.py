"""What both Python floors share: the key table (sha256 of the token → client) they look up."""

from __future__ import annotations

import hashlib
from pathlib import Path


def load_keys(path: Path) -> dict[bytes, str]:
    """One token a line; the table maps sha256(token) to a client name (the floor's "record")."""
    tokens = path.read_text().split()
    return {hashlib.sha256(t.encode()).digest(): f"client-{i}" for i, t in enumerate(tokens)}


def bearer(authorization: str) -> str:
    return authorization[7:] if authorization.startswith("Bearer ") else authorization
