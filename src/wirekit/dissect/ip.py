"""IPv4 (with options), IPv6 (extension headers skipped), TCP and UDP headers.

``decode_frame`` gives a lazy, slotted ``Frame``: headers are decoded on first access, so a
caller that only wants the ports never pays for the IP options.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from wirekit.dissect.link import ETH_IPV4, network_layer
from wirekit.errors import ParseError

_V4_MAPPED = b"\0" * 10 + b"\xff\xff"


def ipv6_text(addr: bytes) -> str:
    """An IPv6 address in RFC 5952 text, IPv4-mapped ones as ``::ffff:a.b.c.d`` (as tshark,
    and Python 3.13's ``ipaddress``, print them)."""
    if addr[:12] == _V4_MAPPED and len(addr) == 16:
        return "::ffff:%d.%d.%d.%d" % (*addr[12:],)  # noqa: UP031
    return str(ipaddress.IPv6Address(addr))

__all__ = [
    "Frame",
    "IPv4Header",
    "IPv6Header",
    "TCPHeader",
    "UDPHeader",
    "decode_frame",
    "decode_ipv4",
    "decode_ipv6",
    "decode_tcp",
    "decode_udp",
    "tcp_flag_names",
]

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIHHHH")
_UDP = struct.Struct("!HHHH")
# Extension headers skipped to reach the transport: hop-by-hop, routing, fragment,
# destination options, mobility, HIP, shim6 (and AH, whose length unit differs).
_IPV6_EXT = frozenset({0, 43, 44, 60, 135, 139, 140})
_FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "AE")


def tcp_flag_names(flags: int) -> list[str]:
    """Flag names in tshark's order: ``[SYN, ACK]``."""
    order = (1, 0, 2, 3, 4, 5, 6, 7, 8)  # SYN first, as tshark prints it
    return [_FLAG_NAMES[i] for i in order if flags >> i & 1]


@dataclass(frozen=True, slots=True)
class IPv4Header:
    src: str
    dst: str
    protocol: int
    ttl: int
    total_length: int
    ident: int
    flags: int
    fragment_offset: int
    header_length: int
    options: bytes
    payload_offset: int  # relative to the start of the IP header
    payload_end: int


@dataclass(frozen=True, slots=True)
class IPv6Header:
    src: str
    dst: str
    protocol: int  # the transport after the extension headers
    hop_limit: int
    payload_length: int
    flow_label: int
    extension_headers: tuple[int, ...]
    fragment: bool
    payload_offset: int
    payload_end: int


@dataclass(frozen=True, slots=True)
class TCPHeader:
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    checksum: int
    urgent: int
    header_length: int
    options: tuple[tuple[int, bytes], ...]

    @property
    def flag_names(self) -> list[str]:
        return tcp_flag_names(self.flags)

    @property
    def mss(self) -> int | None:
        for kind, value in self.options:
            if kind == 2 and len(value) == 2:
                return int.from_bytes(value, "big")
        return None


@dataclass(frozen=True, slots=True)
class UDPHeader:
    src_port: int
    dst_port: int
    length: int
    checksum: int


def decode_ipv4(data: bytes | memoryview) -> IPv4Header:
    if len(data) < 20:
        raise ParseError("IPv4 header truncated", offset=0)
    vihl, _tos, total, ident, frag, ttl, proto, _csum, src, dst = _IPV4.unpack_from(data)
    if vihl >> 4 != 4:
        raise ParseError(f"IP version {vihl >> 4} in an IPv4 header", offset=0)
    ihl = (vihl & 15) * 4
    if ihl < 20 or ihl > len(data):
        raise ParseError(f"IPv4 header length {ihl} invalid", offset=0)
    end = min(len(data), total) if total >= ihl else len(data)
    return IPv4Header(str(ipaddress.IPv4Address(src)), str(ipaddress.IPv4Address(dst)), proto,
                      ttl, total, ident, frag >> 13, (frag & 0x1FFF) * 8, ihl,
                      bytes(data[20:ihl]), ihl, end)


def decode_ipv6(data: bytes | memoryview) -> IPv6Header:
    if len(data) < 40:
        raise ParseError("IPv6 header truncated", offset=0)
    vfl, plen, nh, hlim, src, dst = _IPV6.unpack_from(data)
    if vfl >> 28 != 6:
        raise ParseError(f"IP version {vfl >> 28} in an IPv6 header", offset=0)
    end = min(len(data), 40 + plen)
    p, exts, fragment = 40, [], False
    while nh in _IPV6_EXT or nh == 51:
        if end - p < 8:
            raise ParseError("IPv6 extension header truncated", offset=p)
        exts.append(nh)
        if nh == 44:
            fragment = fragment or bool(struct.unpack_from("!H", data, p + 2)[0] & 0xFFF8)
            size = 8
        elif nh == 51:
            size = (data[p + 1] + 2) * 4
        else:
            size = (data[p + 1] + 1) * 8
        nh = data[p]
        p += size
    if p > end:
        raise ParseError("IPv6 extension headers overrun the packet", offset=end)
    return IPv6Header(ipv6_text(src), ipv6_text(dst), nh,
                      hlim, plen, vfl & 0xFFFFF, tuple(exts), fragment, p, end)


def _tcp_options(raw: bytes) -> tuple[tuple[int, bytes], ...]:
    out, i = [], 0
    while i < len(raw):
        kind = raw[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2 or i + raw[i + 1] > len(raw):
            raise ParseError(f"TCP option {kind} truncated", offset=i)
        out.append((kind, bytes(raw[i + 2 : i + raw[i + 1]])))
        i += raw[i + 1]
    return tuple(out)


def decode_tcp(data: bytes | memoryview) -> TCPHeader:
    if len(data) < 20:
        raise ParseError("TCP header truncated", offset=0)
    sport, dport, seq, ack, offflags, window, csum, urg = _TCP.unpack_from(data)
    hlen = (offflags >> 12) * 4
    if hlen < 20 or hlen > len(data):
        raise ParseError(f"TCP header length {hlen} invalid", offset=12)
    return TCPHeader(sport, dport, seq, ack, offflags & 0x1FF, window, csum, urg, hlen,
                     _tcp_options(bytes(data[20:hlen])))


def decode_udp(data: bytes | memoryview) -> UDPHeader:
    if len(data) < 8:
        raise ParseError("UDP header truncated", offset=0)
    return UDPHeader(*_UDP.unpack_from(data))


class Frame:
    """One captured frame, decoded on demand.  ``ip``/``tcp``/``udp`` are None when absent."""

    __slots__ = ("_ip", "_l4", "_net", "data", "linktype")

    def __init__(self, linktype: int, data: bytes) -> None:
        self.linktype = linktype
        self.data = data
        self._net: tuple[int, int] | bool | None = False
        self._ip: IPv4Header | IPv6Header | bool | None = False
        self._l4: TCPHeader | UDPHeader | bool | None = False

    @property
    def ip(self) -> IPv4Header | IPv6Header | None:
        if self._ip is False:
            net = network_layer(self.linktype, self.data)
            self._net = net
            if net is None:
                self._ip = None
            else:
                et, off = net
                view = memoryview(self.data)[off:]
                self._ip = decode_ipv4(view) if et == ETH_IPV4 else decode_ipv6(view)
        return self._ip  # type: ignore[return-value]

    def _transport(self) -> TCPHeader | UDPHeader | None:
        if self._l4 is False:
            ip = self.ip
            self._l4 = None
            if ip is not None and not (
                    (isinstance(ip, IPv4Header) and ip.fragment_offset) or
                    (isinstance(ip, IPv6Header) and ip.fragment)):
                assert isinstance(self._net, tuple)
                start = self._net[1] + ip.payload_offset
                view = memoryview(self.data)[start : self._net[1] + ip.payload_end]
                if ip.protocol == 6:
                    self._l4 = decode_tcp(view)
                elif ip.protocol == 17:
                    self._l4 = decode_udp(view)
        return self._l4  # type: ignore[return-value]

    @property
    def tcp(self) -> TCPHeader | None:
        l4 = self._transport()
        return l4 if isinstance(l4, TCPHeader) else None

    @property
    def udp(self) -> UDPHeader | None:
        l4 = self._transport()
        return l4 if isinstance(l4, UDPHeader) else None

    @property
    def payload(self) -> bytes:
        """The transport payload (empty for non-TCP/UDP frames)."""
        l4 = self._transport()
        if l4 is None:
            return b""
        ip = self.ip
        assert ip is not None and isinstance(self._net, tuple)
        start = self._net[1] + ip.payload_offset
        end = self._net[1] + ip.payload_end
        if isinstance(l4, TCPHeader):
            return bytes(self.data[start + l4.header_length : end])
        return bytes(self.data[start + 8 : min(end, start + max(8, l4.length))])


def decode_frame(linktype: int, data: bytes) -> Frame:
    return Frame(linktype, data)
