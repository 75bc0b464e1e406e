"""Phase 6's input: the client address Envoy trusts, the same for every transport.

With ``use_remote_address``, Envoy appends the peer it saw to X-Forwarded-For before any filter
runs (for a loopback peer it appends its own host address instead). With N trusted proxy hops in
front of Envoy, the client is the (N+1)th entry from the right; entries further left are whatever
the client claimed and are never used. Without the header, the TCP peer is the client.
"""

from __future__ import annotations


def client_address(forwarded_for: str | None, peer: str, trusted_hops: int) -> str:
    if not forwarded_for:
        return peer
    hops = forwarded_for.split(",")
    index = len(hops) - 1 - trusted_hops
    return hops[max(index, 0)].strip()
