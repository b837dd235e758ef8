"""Which address is the client: X-Forwarded-For only through trusted proxies, right-most untrusted hop."""

from __future__ import annotations

import pytest

from stagedoor.client_ip import ip_bucket, parse_networks, resolve_client_ip
from stagedoor.settings import SettingsError

PROXIES = parse_networks("10.0.0.0/8, 192.168.1.7")


@pytest.mark.parametrize(("peer", "xff", "client"), [
    ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),                      # untrusted peer: header ignored
    ("10.0.0.2", [], "10.0.0.2"),                                          # trusted peer, no header
    ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
    ("10.0.0.2", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),               # forged left part ignored
    ("10.0.0.2", ["6.6.6.6", "198.51.100.1, 192.168.1.7"], "198.51.100.1"),  # two headers, inner proxy
    ("10.0.0.2", ["garbage, 10.9.9.9"], "10.9.9.9"),                       # garbage: last hop we vouch for
    ("10.0.0.2", ["198.51.100.1:4711"], "198.51.100.1"),
    ("10.0.0.2", ["[2001:db8::1]:443"], "2001:db8::1"),
    ("::ffff:10.0.0.2", ["::ffff:198.51.100.1"], "198.51.100.1"),          # IPv4-mapped peers and hops
    (None, ["198.51.100.1"], "unknown"),                                   # unix socket
])
def test_client_address(peer: str | None, xff: list[str], client: str) -> None:
    assert resolve_client_ip(peer, xff, PROXIES) == client


def test_without_trusted_proxies_the_header_never_counts() -> None:
    assert resolve_client_ip("10.0.0.2", ["198.51.100.1"], ()) == "10.0.0.2"


def test_ipv6_clients_share_a_bucket_per_64() -> None:
    assert ip_bucket("2001:db8:1:2:aaaa::1") == ip_bucket("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert ip_bucket("2001:db8:1:3::1") != ip_bucket("2001:db8:1:2::1")
    assert ip_bucket("198.51.100.1") == "198.51.100.1"


def test_a_bad_proxy_list_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="nope"):
        parse_networks("10.0.0.0/8,nope")
