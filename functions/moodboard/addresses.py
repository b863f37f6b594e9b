"""Which addresses the fetcher may dial: global unicast, outside every IANA special-purpose block.

Python's `ipaddress` flags lag the registries (3.11 calls 192.0.0.8 and fec0::1 global), so the
blocks are written out here from IANA's IPv4 and IPv6 Special-Purpose Address Registries, with the
IPv6 Address Space registry's global unicast block as an allow-list; the standard library's flags
are kept as a second opinion. IPv4-mapped (::ffff:a.b.c.d) and 6to4 (2002:AABB:CCDD::) addresses
are judged by the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class SpecialBlock:
    """One entry of an IANA special-purpose address registry."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    name: str
    rfc: str
    # The registry's "Globally Reachable" column (None where it says N/A). Informational only: every
    # block is refused, reachable or not, since protocol anycast and translation prefixes host no
    # images; IPv4-mapped and 6to4 addresses are judged by the IPv4 address they carry instead.
    globally_reachable: bool | None


def _block(cidr: str, name: str, rfc: str, reachable: bool | None) -> SpecialBlock:
    return SpecialBlock(ipaddress.ip_network(cidr), name, rfc, reachable)


# Source: IANA IPv4 Special-Purpose Address Registry (iana-ipv4-special-registry) and IANA IPv6
# Special-Purpose Address Registry (iana-ipv6-special-registry), https://www.iana.org/assignments/,
# entries as of 2024. Keep in step with the registries; tests/unit/test_addresses.py probes every block.
SPECIAL_PURPOSE_BLOCKS: tuple[SpecialBlock, ...] = (
    _block("0.0.0.0/8", "This network", "RFC 791", False),
    _block("0.0.0.0/32", "This host on this network", "RFC 1122", False),
    _block("10.0.0.0/8", "Private-Use", "RFC 1918", False),
    _block("100.64.0.0/10", "Shared Address Space", "RFC 6598", False),
    _block("127.0.0.0/8", "Loopback", "RFC 1122", False),
    _block("169.254.0.0/16", "Link Local", "RFC 3927", False),
    _block("172.16.0.0/12", "Private-Use", "RFC 1918", False),
    _block("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890", False),
    _block("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", False),
    _block("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", False),
    _block("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", True),
    _block("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", True),
    _block("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 8880", False),
    _block("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 8880", False),
    _block("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", False),
    _block("192.31.196.0/24", "AS112-v4", "RFC 7535", True),
    _block("192.52.193.0/24", "AMT", "RFC 7450", True),
    _block("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", None),
    _block("192.168.0.0/16", "Private-Use", "RFC 1918", False),
    _block("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", True),
    _block("198.18.0.0/15", "Benchmarking", "RFC 2544", False),
    _block("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", False),
    _block("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", False),
    _block("240.0.0.0/4", "Reserved", "RFC 1112", False),
    _block("255.255.255.255/32", "Limited Broadcast", "RFC 919", False),
    _block("::1/128", "Loopback Address", "RFC 4291", False),
    _block("::/128", "Unspecified Address", "RFC 4291", False),
    _block("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", False),
    _block("64:ff9b::/96", "IPv4-IPv6 Translat.", "RFC 6052", True),
    _block("64:ff9b:1::/48", "IPv4-IPv6 Translat.", "RFC 8215", False),
    _block("100::/64", "Discard-Only Address Block", "RFC 6666", False),
    _block("2001::/23", "IETF Protocol Assignments", "RFC 2928", False),
    _block("2001::/32", "TEREDO", "RFC 4380", None),
    _block("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", True),
    _block("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", True),
    _block("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC 9665", True),
    _block("2001:2::/48", "Benchmarking", "RFC 5180", False),
    _block("2001:3::/32", "AMT", "RFC 7450", True),
    _block("2001:4:112::/48", "AS112-v6", "RFC 7535", True),
    _block("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", None),
    _block("2001:20::/28", "ORCHIDv2", "RFC 7343", True),
    _block("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374", True),
    _block("2001:db8::/32", "Documentation", "RFC 3849", False),
    _block("2002::/16", "6to4", "RFC 3056", None),
    _block("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", True),
    _block("3fff::/20", "Documentation", "RFC 9637", False),
    _block("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", False),
    _block("fc00::/7", "Unique-Local", "RFC 4193", False),
    _block("fe80::/10", "Link-Local Unicast", "RFC 4291", False),
)
# IANA IPv6 Address Space registry: the only block allocated as Global Unicast. Everything outside
# it (deprecated site-local fec0::/10, ULA, link-local, multicast, ::/8 ...) is refused.
IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


def special_block(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> SpecialBlock | None:
    """The most specific IANA special-purpose block holding address, or None."""
    blocks = [b for b in SPECIAL_PURPOSE_BLOCKS if b.network.version == address.version and address in b.network]
    return max(blocks, key=lambda b: b.network.prefixlen, default=None)


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast address; False for anything in an IANA special-purpose
    block (loopback, private, link-local, CGNAT, documentation, benchmarking, protocol anycast ...),
    IPv6 outside global unicast 2000::/3 (ULA, deprecated site-local, multicast), IPv4 multicast,
    and IPv4-mapped / 6to4 forms of those (the IPv4 address they carry is what is checked)."""
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = addr.ipv4_mapped or addr.sixtofour
        if embedded is not None:
            addr = embedded
        elif addr not in IPV6_GLOBAL_UNICAST:
            return False
    if special_block(addr) is not None:
        return False
    # The standard library's view as a second opinion (its tables may know a block ours lacks).
    return addr.is_global and not (
        addr.is_multicast or addr.is_reserved or addr.is_link_local or addr.is_loopback or addr.is_unspecified
    )
