"""Link layers, IPv4 (options), IPv6 (extension headers), TCP (options), UDP; synthesis."""

from __future__ import annotations

import contextlib
import struct

import pytest

from wirekit.dissect.ip import decode_frame, decode_ipv4, decode_ipv6, decode_tcp, tcp_flag_names
from wirekit.dissect.link import network_layer
from wirekit.errors import ParseError
from wirekit.pcapng.synth import ACK, SYN, TcpFlow, checksum, ip_packet, tcp_frame, udp_frame

CLIENT, SERVER = ("10.0.0.1", 40000), ("10.0.0.2", 80)


def test_synthesized_tcp_frame_decodes_with_valid_checksums() -> None:
    frame = tcp_frame(CLIENT, SERVER, seq=7, ack=9, flags=SYN | ACK, payload=b"hi",
                      options=struct.pack("!BBH", 2, 4, 1460))
    f = decode_frame(1, frame)
    assert f.ip is not None and f.ip.src == "10.0.0.1" and f.ip.dst == "10.0.0.2"
    assert f.tcp is not None and (f.tcp.seq, f.tcp.ack) == (7, 9)
    assert f.tcp.flag_names == ["SYN", "ACK"] and f.tcp.mss == 1460
    assert f.payload == b"hi" and f.udp is None
    ip = frame[14:34]
    assert checksum(ip) == 0
    seg = frame[34:]
    pseudo = bytes([10, 0, 0, 1, 10, 0, 0, 2, 0, 6]) + struct.pack("!H", len(seg))
    assert checksum(pseudo + seg) == 0


def test_udp_over_ipv6_checksum_and_decode() -> None:
    frame = udp_frame(("::1", 5000), ("::1", 53), b"abc")
    f = decode_frame(1, frame)
    assert f.ip is not None and f.ip.src == "::1" and f.udp is not None
    assert (f.udp.src_port, f.udp.dst_port, f.payload) == (5000, 53, b"abc")
    seg = frame[54:]
    pseudo = bytes(15) + b"\x01" + bytes(15) + b"\x01" + struct.pack("!IxxxB", len(seg), 17)
    assert checksum(pseudo + seg) == 0


def test_ipv4_options_and_fragment() -> None:
    seg = struct.pack("!HHIIBBHHH", 1, 2, 3, 4, 5 << 4, ACK, 100, 0, 0)
    opts = b"\x07\x07\x04" + b"\0" * 4 + b"\x00"  # record route + end of list
    head = struct.pack("!BBHHHBBH4s4s", 0x47, 0, 28 + len(seg), 1, 0x2000 | 3, 64, 6, 0,
                       bytes([1, 1, 1, 1]), bytes([2, 2, 2, 2]))
    ip = decode_ipv4(head + opts + seg)
    assert ip.header_length == 28 and ip.options == opts and ip.fragment_offset == 24
    assert ip.flags == 1 and ip.payload_offset == 28
    f = decode_frame(228, head + opts + seg)
    assert f.tcp is None  # a non-first fragment carries no transport header


def test_ipv6_extension_headers_skipped() -> None:
    seg = struct.pack("!HHIIBBHHH", 1, 2, 3, 4, 5 << 4, SYN, 100, 0, 0)
    hop = bytes([60, 0]) + b"\x01\x04\0\0\0\0"  # hop-by-hop -> destination options
    dest = bytes([6, 0]) + b"\x01\x04\0\0\0\0"
    body = hop + dest + seg
    head = struct.pack("!IHBB16s16s", 6 << 28, len(body), 0, 64, bytes(15) + b"\1",
                       bytes(15) + b"\2")
    ip = decode_ipv6(head + body)
    assert ip.protocol == 6 and ip.extension_headers == (0, 60) and ip.payload_offset == 56
    f = decode_frame(229, head + body)
    assert f.tcp is not None and f.tcp.flag_names == ["SYN"]


def test_tcp_options_and_errors() -> None:
    opts = b"\x02\x04\x05\xb4\x01\x03\x03\x07\x04\x02\x00\x00"
    seg = struct.pack("!HHIIBBHHH", 1, 2, 3, 4, 8 << 4, SYN, 100, 0, 0) + opts
    tcp = decode_tcp(seg)
    assert tcp.options == ((2, b"\x05\xb4"), (3, b"\x07"), (4, b"")) and tcp.mss == 1460
    with pytest.raises(ParseError):
        decode_tcp(seg[:19])
    bad = seg[:20] + b"\x02\x09\x05\xb4" + seg[24:]
    with pytest.raises(ParseError, match="option"):
        decode_tcp(bad)
    assert tcp_flag_names(0x1FF)[:2] == ["SYN", "FIN"]


@pytest.mark.parametrize(("linktype", "prefix"), [
    (113, b"\0\0\0\x01\0\x06" + b"\0" * 8 + b"\x08\x00"),
    (276, b"\x08\x00" + b"\0" * 18),
    (101, b""),
    (228, b""),
    (0, struct.pack("<I", 2)),
    (0, struct.pack("!I", 2)),
    (108, struct.pack("!I", 2)),
])
def test_link_types(linktype: int, prefix: bytes) -> None:
    packet, _ = ip_packet("127.0.0.1", "127.0.0.2", 17,
                          struct.pack("!HHHH", 1, 2, 9, 0) + b"x")
    frame = prefix + packet
    et, off = network_layer(linktype, frame)
    assert et == 0x0800 and off == len(prefix)
    f = decode_frame(linktype, frame)
    assert f.udp is not None and f.payload == b"x"


def test_vlan_and_non_ip() -> None:
    packet, _ = ip_packet("127.0.0.1", "127.0.0.2", 17, struct.pack("!HHHH", 1, 2, 8, 0))
    frame = b"\2" * 12 + b"\x81\x00\x00\x05\x08\x00" + packet
    assert network_layer(1, frame) == (0x0800, 18)
    assert network_layer(1, b"\2" * 12 + b"\x08\x06" + b"\0" * 28) is None  # ARP
    assert network_layer(147, b"whatever") is None
    with pytest.raises(ParseError):
        network_layer(1, b"\2" * 10)


def test_every_prefix_of_a_frame_is_parse_error_or_none() -> None:
    flow = TcpFlow(CLIENT, SERVER)
    frame = flow.handshake()[0]
    for n in range(len(frame)):
        f = decode_frame(1, frame[:n])
        with contextlib.suppress(ParseError):
            _ = f.tcp, f.payload


def test_ipv6_text_prints_mapped_addresses_like_tshark() -> None:
    import ipaddress

    from wirekit.dissect.conversations import format_endpoint
    from wirekit.dissect.ip import ipv6_text

    mapped = ipaddress.IPv6Address("::ffff:127.0.0.1").packed
    assert ipv6_text(mapped) == "::ffff:127.0.0.1"
    assert format_endpoint(mapped, 8443) == "[::ffff:127.0.0.1]:8443"
    assert ipv6_text(ipaddress.IPv6Address("2001:db8::ffff:1").packed) == "2001:db8::ffff:1"
    assert ipv6_text(ipaddress.IPv6Address("::1").packed) == "::1"
