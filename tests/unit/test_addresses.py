"""The address classes the SSRF guard refuses: every block of the IANA special-purpose table.

Only address arithmetic: nothing here resolves a name or opens a socket (the fetch-level checks with a
stubbed resolver are in test_fetch.py).
"""

from __future__ import annotations

import ipaddress

import pytest

from moodboard.addresses import SPECIAL_PURPOSE_BLOCKS, is_public_address, special_block

# IPv4-mapped and 6to4 addresses carry an IPv4 address, and that is what is checked (::ffff:8.8.8.8
# is public), so only their ends (0.0.0.0 and 255.255.255.255 inside) are refused as a whole.
IPV4_CARRIERS = {ipaddress.ip_network("::ffff:0:0/96"), ipaddress.ip_network("2002::/16")}


def test_every_block_of_the_special_purpose_table_is_refused() -> None:
    blocks = SPECIAL_PURPOSE_BLOCKS
    assert {b.network.version for b in blocks} == {4, 6} and len(blocks) >= 45
    for block in blocks:
        net = block.network
        probes = [net[0], net[-1]]
        if net not in IPV4_CARRIERS:
            probes += [net[net.num_addresses // 2], net[1 % net.num_addresses]]
        for address in probes:
            assert is_public_address(str(address)) is False, (block.name, str(address))


def test_special_block_names_the_most_specific_registry_entry() -> None:
    assert special_block(ipaddress.ip_address("192.0.0.8")).name == "IPv4 dummy address"
    assert special_block(ipaddress.ip_address("2001:1::1")).rfc == "RFC 7723"
    assert special_block(ipaddress.ip_address("93.184.216.34")) is None


@pytest.mark.parametrize(
    "address",
    ["192.0.1.1", "192.88.98.1", "198.17.255.1", "198.20.0.1", "203.0.114.1", "2001:200::1", "2003::1",
     "2606:4700::1111", "2002:5db8:d822::1", "::ffff:93.184.216.34"],
)
def test_addresses_next_to_special_blocks_stay_public(address: str) -> None:
    assert is_public_address(address) is True
