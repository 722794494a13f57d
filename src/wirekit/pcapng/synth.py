"""Frame synthesis: Ethernet / IPv4 / IPv6 + TCP / UDP with correct checksums.

``TcpFlow`` turns a conversation (handshake, data each way, FIN or RST) into the frames a
capture tool would have seen, with consistent sequence and acknowledgement numbers.  Pure:
timestamps are the caller's.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator

__all__ = [
    "ACK",
    "FIN",
    "PSH",
    "RST",
    "SYN",
    "TcpFlow",
    "checksum",
    "ethernet",
    "ip_packet",
    "tcp_frame",
    "udp_frame",
]

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
PROTO_TCP, PROTO_UDP = 6, 17
_MAC_A = b"\x02\x00\x00\x00\x00\x01"
_MAC_B = b"\x02\x00\x00\x00\x00\x02"


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _addr(host: str) -> bytes:
    return ipaddress.ip_address(host).packed


def ethernet(payload: bytes, ethertype: int, src: bytes = _MAC_A, dst: bytes = _MAC_B) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def ip_packet(src: str, dst: str, proto: int, payload: bytes, *, ttl: int = 64,
              ident: int = 0) -> tuple[bytes, int]:
    """An IPv4 or IPv6 packet (by address family) and its ethertype."""
    s, d = _addr(src), _addr(dst)
    if len(s) != len(d):
        raise ValueError("source and destination must be the same address family")
    if len(s) == 4:
        head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF,
                           0x4000, ttl, proto, 0, s, d)
        head = head[:10] + struct.pack("!H", checksum(head)) + head[12:]
        return head + payload, ETH_IPV4
    head = struct.pack("!IHBB16s16s", 6 << 28, len(payload), proto, ttl, s, d)
    return head + payload, ETH_IPV6


def _transport(src: str, dst: str, proto: int, segment: bytes, csum_at: int) -> bytes:
    csum = checksum(_pseudo(_addr(src), _addr(dst), proto, len(segment)) + segment)
    if proto == PROTO_UDP and csum == 0:
        csum = 0xFFFF
    return segment[:csum_at] + struct.pack("!H", csum) + segment[csum_at + 2 :]


def tcp_frame(src: tuple[str, int], dst: tuple[str, int], *, seq: int, ack: int = 0,
              flags: int = ACK, payload: bytes = b"", window: int = 65535,
              options: bytes = b"", ident: int = 0) -> bytes:
    """An Ethernet frame carrying one TCP segment."""
    if len(options) % 4:
        options += b"\x01" * (4 - len(options) % 4)  # NOP padding
    offset = (20 + len(options)) // 4
    seg = struct.pack("!HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      offset << 4, flags, window, 0, 0) + options + payload
    seg = _transport(src[0], dst[0], PROTO_TCP, seg, 16)
    packet, ethertype = ip_packet(src[0], dst[0], PROTO_TCP, seg, ident=ident)
    return ethernet(packet, ethertype)


def udp_frame(src: tuple[str, int], dst: tuple[str, int], payload: bytes,
              ident: int = 0) -> bytes:
    """An Ethernet frame carrying one UDP datagram."""
    seg = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    seg = _transport(src[0], dst[0], PROTO_UDP, seg, 6)
    packet, ethertype = ip_packet(src[0], dst[0], PROTO_UDP, seg, ident=ident)
    return ethernet(packet, ethertype)


class TcpFlow:
    """Sequence bookkeeping for one synthesized TCP connection.

    Each method returns the frames for one step; ``"c"`` is the client, ``"s"`` the server.
    """

    def __init__(self, client: tuple[str, int], server: tuple[str, int], *,
                 client_isn: int = 1000, server_isn: int = 5000, mss: int = 1460) -> None:
        self.ends = {"c": client, "s": server}
        self.next = {"c": client_isn, "s": server_isn}
        self.mss = mss
        self._ident = 0

    def _other(self, side: str) -> str:
        return "s" if side == "c" else "c"

    def _frame(self, side: str, flags: int, payload: bytes = b"", options: bytes = b"") -> bytes:
        other = self._other(side)
        self._ident += 1
        frame = tcp_frame(self.ends[side], self.ends[other], seq=self.next[side],
                          ack=self.next[other] if flags & ACK else 0, flags=flags,
                          payload=payload, options=options, ident=self._ident)
        self.next[side] = (self.next[side] + len(payload) + (1 if flags & (SYN | FIN) else 0)
                           ) & 0xFFFFFFFF
        return frame

    def handshake(self) -> list[bytes]:
        mss = struct.pack("!BBH", 2, 4, self.mss)
        return [self._frame("c", SYN, options=mss), self._frame("s", SYN | ACK, options=mss),
                self._frame("c", ACK)]

    def send(self, side: str, data: bytes, *, ack: bool = True) -> list[bytes]:
        """Data from ``side`` split into MSS-sized segments, each followed by the peer's ACK
        when ``ack``."""
        out = []
        for piece in _chunks(data, self.mss):
            out.append(self._frame(side, PSH | ACK, piece))
            if ack:
                out.append(self._frame(self._other(side), ACK))
        return out

    def segment(self, side: str, data: bytes, seq: int | None = None) -> bytes:
        """One data segment at an explicit ``seq`` (for retransmissions); bookkeeping of the
        next sequence number is unchanged when ``seq`` is given."""
        if seq is None:
            return self._frame(side, PSH | ACK, data)
        saved = self.next[side]
        self.next[side] = seq & 0xFFFFFFFF
        frame = self._frame(side, PSH | ACK, data)
        self.next[side] = saved
        return frame

    def close(self, side: str = "c") -> list[bytes]:
        other = self._other(side)
        return [self._frame(side, FIN | ACK), self._frame(other, FIN | ACK),
                self._frame(side, ACK)]

    def reset(self, side: str = "c") -> list[bytes]:
        return [self._frame(side, RST | ACK)]


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]
