"""Link layers: where the IP packet starts in a frame, for each supported link type."""

from __future__ import annotations

import struct

from wirekit.errors import ParseError

__all__ = ["ETH_IPV4", "ETH_IPV6", "SUPPORTED_LINKTYPES", "network_layer"]

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
_VLAN = (0x8100, 0x88A8, 0x9100)
_U16 = struct.Struct("!H")
_U32LE = struct.Struct("<I")
_U32BE = struct.Struct("!I")
# BSD AF_INET6 differs between systems: 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS), 10 (Linux).
_AF_INET6 = frozenset({10, 24, 28, 30})

SUPPORTED_LINKTYPES = {
    0: "BSD loopback",
    1: "Ethernet",
    101: "raw IP",
    108: "OpenBSD loopback",
    113: "Linux cooked (SLL)",
    228: "raw IPv4",
    229: "raw IPv6",
    276: "Linux cooked (SLL2)",
}


def network_layer(linktype: int, data: bytes | memoryview, off: int = 0,
                  end: int | None = None) -> tuple[int, int] | None:
    """``(ethertype, offset of the network header)``, or None for a frame that carries no
    IP (ARP, an unknown link type).  Raises ``ParseError`` for a frame too short for its
    link header."""
    end = len(data) if end is None else end
    if linktype == 1:
        if end - off < 14:
            raise ParseError("Ethernet frame shorter than its header", offset=off)
        (et,) = _U16.unpack_from(data, off + 12)
        p = off + 14
        while et in _VLAN:
            if end - p < 4:
                raise ParseError("VLAN tag truncated", offset=p)
            (et,) = _U16.unpack_from(data, p + 2)
            p += 4
        return (et, p) if et in (ETH_IPV4, ETH_IPV6) else None
    if linktype == 113:
        if end - off < 16:
            raise ParseError("Linux cooked header truncated", offset=off)
        (et,) = _U16.unpack_from(data, off + 14)
        return (et, off + 16) if et in (ETH_IPV4, ETH_IPV6) else None
    if linktype == 276:
        if end - off < 20:
            raise ParseError("Linux cooked v2 header truncated", offset=off)
        (et,) = _U16.unpack_from(data, off)
        return (et, off + 20) if et in (ETH_IPV4, ETH_IPV6) else None
    if linktype in (101, 228, 229):
        if end - off < 1:
            raise ParseError("empty raw IP frame", offset=off)
        version = data[off] >> 4
        if version == 4:
            return ETH_IPV4, off
        if version == 6:
            return ETH_IPV6, off
        return None
    if linktype in (0, 108):
        if end - off < 4:
            raise ParseError("loopback header truncated", offset=off)
        (le,) = _U32LE.unpack_from(data, off)
        (be,) = _U32BE.unpack_from(data, off)
        family = be if linktype == 108 or be < 256 else le
        if family == 2:
            return ETH_IPV4, off + 4
        if family in _AF_INET6:
            return ETH_IPV6, off + 4
        return None
    return None
