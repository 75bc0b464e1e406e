"""The client address rule: only the entries Envoy and the trusted proxies wrote count."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from authz.check.network import client_address

ips = st.ip_addresses(v=4).map(str)


def test_no_header_means_the_peer() -> None:
    assert client_address(None, "198.51.100.7", 0) == "198.51.100.7"
    assert client_address("", "198.51.100.7", 2) == "198.51.100.7"


def test_zero_trusted_hops_takes_what_envoy_appended() -> None:
    assert client_address("10.0.0.1, 203.0.113.5", "127.0.0.1", 0) == "203.0.113.5"


def test_n_trusted_hops_skip_the_proxies_entries() -> None:
    # client 192.0.2.9 → proxy A (adds 192.0.2.9) → proxy B (adds A's address) → Envoy (adds B's)
    header = "10.6.6.6, 192.0.2.9, 198.51.100.1, 198.51.100.2"
    assert client_address(header, "198.51.100.2", 2) == "192.0.2.9"
    assert client_address(header, "198.51.100.2", 1) == "198.51.100.1"


@given(st.lists(ips, max_size=5), st.lists(ips, min_size=1, max_size=4))
def test_forged_entries_never_decide(forged: list[str], trusted: list[str]) -> None:
    """Whatever the client claims (left), the answer comes from the trusted suffix."""
    header = ", ".join([*forged, *trusted])
    hops = len(trusted) - 1
    assert client_address(header, "127.0.0.1", hops) == trusted[0]
