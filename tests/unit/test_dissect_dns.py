"""DNS: questions, answers, compression pointers, loops and truncation."""

from __future__ import annotations

import struct

import pytest

from wirekit.dissect.dns import build_query, parse_dns
from wirekit.errors import ParseError


def response() -> bytes:
    q = build_query(0x1234, "www.example.test")
    header = struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 3, 0, 0)
    body = q[12:]
    a = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([192, 0, 2, 7])
    aaaa = b"\xc0\x0c" + struct.pack("!HHIH", 28, 1, 60, 16) + bytes(15) + b"\x01"
    cname_target = b"\x03cdn\xc0\x10"  # "cdn." + pointer to "example.test"
    cname = b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 10, len(cname_target)) + cname_target
    return header + body + a + aaaa + cname


def test_query() -> None:
    m = parse_dns(build_query(7, "example.test", 28))
    assert m.id == 7 and not m.response and m.questions[0].name == "example.test"
    assert m.questions[0].type == "AAAA" and m.answers == ()


def test_response_with_compression() -> None:
    m = parse_dns(response())
    assert m.response and m.rcode == "NOERROR"
    assert [(a.name, a.type, a.data) for a in m.answers] == [
        ("www.example.test", "A", "192.0.2.7"),
        ("www.example.test", "AAAA", "::1"),
        ("www.example.test", "CNAME", "cdn.example.test")]
    assert parse_dns(response() + b"trailing junk").answers == m.answers


def test_pointer_loop_is_parse_error() -> None:
    header = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0)
    looped = header + b"\xc0\x0c" + b"\0\x01\0\x01"  # points at itself
    with pytest.raises(ParseError, match="loop"):
        parse_dns(looped)
    two = header + b"\x01a\xc0\x0e" + b"\x01b\xc0\x0c"  # a -> b -> a
    with pytest.raises(ParseError, match="loop"):
        parse_dns(two)


def test_every_prefix_is_parse_error() -> None:
    data = response()
    for n in range(len(data)):
        with pytest.raises(ParseError):
            parse_dns(data[:n])


def test_long_name_rejected() -> None:
    header = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0)
    name = (b"\x3f" + b"a" * 63) * 5 + b"\0"
    with pytest.raises(ParseError, match="255"):
        parse_dns(header + name + b"\0\x01\0\x01")
