import re

import pytest

from wirekit.address import Address, parse_address
from wirekit.errors import AddressError, UsageError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.org:80", Address("tcp", "example.org", 80)),
        ("127.0.0.1:8080", Address("tcp", "127.0.0.1", 8080)),
        (":12345", Address("tcp", "127.0.0.1", 12345)),
        ("[::1]:9", Address("tcp", "::1", 9)),
        ("[fe80::1%lo]:9", Address("tcp", "fe80::1%lo", 9)),
        ("tcp://localhost:0", Address("tcp", "localhost", 0)),
        ("udp://:53", Address("udp", "127.0.0.1", 53)),
        ("UDP://[::1]:53", Address("udp", "::1", 53)),
        ("tls://example.org:443", Address("tls", "example.org", 443)),
        ("unix:/tmp/x.sock", Address("unix", path="/tmp/x.sock")),
        ("  host_name.local:65535 ", Address("tcp", "host_name.local", 65535)),
    ],
)
def test_parses(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty address"),
        ("   ", "empty address"),
        ("host", "has no port"),
        ("host:99999", "out of range"),
        ("host:", "empty port"),
        ("host:http", "not a number"),
        ("host:-1", "not a number"),
        ("[::1", "unclosed '['"),
        ("[::1]", "has no port"),
        ("[::1]x:80", "unexpected"),
        ("[nothex]:80", "not an IPv6 address"),
        ("::1:80", "need brackets"),
        ("ftp://host:21", "unknown scheme"),
        ("bad host:80", "not a valid host name"),
        ("1.2.3.999:80", "not a valid host name"),
        ("unix:", "no socket path"),
    ],
)
def test_rejects_with_reason(text: str, reason: str) -> None:
    with pytest.raises(AddressError, match=re.escape(reason)) as info:
        parse_address(text)
    assert isinstance(info.value, UsageError)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_default_port_and_restricted_schemes() -> None:
    assert parse_address("example.org", default_port=443).port == 443
    assert parse_address("udp://:7", schemes=("udp",)).scheme == "udp"
    with pytest.raises(AddressError, match="not supported here"):
        parse_address("udp://:7", schemes=("tcp", "tls"))
    assert parse_address("x:1", default_scheme="udp").scheme == "udp"


def test_str_round_trips() -> None:
    for text in ("tcp://127.0.0.1:80", "udp://[::1]:53", "tls://example.org:443", "unix:/x"):
        assert str(parse_address(text)) == text
    assert parse_address("[::1]:5").hostport == "[::1]:5"


def test_loopback() -> None:
    assert parse_address(":1").is_loopback
    assert parse_address("[::1]:1").is_loopback
    assert parse_address("localhost:1").is_loopback
    assert parse_address("127.8.9.10:1").is_loopback
    assert not parse_address("0.0.0.0:1").is_loopback
    assert not parse_address("example.org:1").is_loopback
