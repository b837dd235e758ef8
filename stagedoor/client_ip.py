"""The client's IP address, as far as we can trust it.

``X-Forwarded-For`` is honoured only when the direct peer is a configured trusted proxy
(``STAGEDOOR_TRUSTED_PROXIES``: comma-separated IPs/CIDRs). Then the header is read from
the right: every hop that is itself a trusted proxy is skipped, and the right-most hop that
is not is the client (anything left of it was written by the client and can be forged).
From an untrusted peer the header is ignored, so a bot cannot pick its own rate-limit bucket.

Rate limits bucket IPv6 clients by their /64: one subscriber line gets a whole /64, so
per-address buckets would give an attacker 2**64 fresh buckets.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from stagedoor.request_view import RequestView
from stagedoor.settings import SettingsError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_FORWARDED_HOPS = 32  # a longer X-Forwarded-For is not a real proxy chain; read only its tail


@lru_cache(maxsize=64)
def parse_networks(spec: str, setting: str = "STAGEDOOR_TRUSTED_PROXIES") -> tuple[IPNetwork, ...]:
    """"10.0.0.0/8, 192.168.1.7" -> networks; raises SettingsError naming the bad entry."""
    networks: list[IPNetwork] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(f"invalid {setting}: {item!r} is not an IP address or CIDR") from None
    return tuple(networks)


def parse_ip(text: str) -> IPAddress | None:
    """An address from a peer name or a forwarded hop ("1.2.3.4", "1.2.3.4:80", "[::1]:80"); None if garbage."""
    text = text.strip()
    if len(text) > 64:
        return None
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def is_within(addr: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(addr in net for net in networks)


def resolve_client_ip(peer: str | None, forwarded_for: list[str], trusted: tuple[IPNetwork, ...]) -> str:
    """The client address given the direct peer, the X-Forwarded-For header values and the trusted proxies."""
    peer_addr = parse_ip(peer or "")
    if peer_addr is None:
        return peer or "unknown"  # a unix socket: there is no address to trust or forge
    if not trusted or not is_within(peer_addr, trusted):
        return str(peer_addr)
    hops = [hop for value in forwarded_for for hop in value.split(",")][-MAX_FORWARDED_HOPS:]
    client = peer_addr
    for raw in reversed(hops):
        addr = parse_ip(raw)
        if addr is None:
            break  # garbage: our proxy did not write this; stay with the last hop we can vouch for
        client = addr
        if not is_within(addr, trusted):
            break
    return str(client)


def client_ip(request: RequestView, trusted_proxies: str) -> str:
    """The request's client address (see the module docstring)."""
    peer = request.remote
    trusted = parse_networks(trusted_proxies)
    return resolve_client_ip(peer, request.headers.getall("X-Forwarded-For", []), trusted)


def ip_bucket(ip: str) -> str:
    """The rate-limit identity of an address: itself for IPv4, its /64 for IPv6."""
    addr = parse_ip(ip)
    if isinstance(addr, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr) if addr is not None else ip
