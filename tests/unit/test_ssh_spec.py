"""OpenSSH forward/target spellings, the SOCKS handshake, and the host-key policy (no network)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from conftest import need_module
from wirekit.errors import HostKeyChanged, HostKeyUnknown, UsageError
from wirekit.ssh.socks import SocksError, SocksHandshake
from wirekit.ssh.spec import Forward, SSHTarget, parse_forward, parse_target


@pytest.mark.parametrize(("kind", "text", "expected"), [
    ("L", "5432:db:5432", Forward("L", "127.0.0.1", 5432, "db", 5432)),
    ("L", "0:db:5432", Forward("L", "127.0.0.1", 0, "db", 5432)),
    ("L", "0.0.0.0:80:web:8080", Forward("L", "0.0.0.0", 80, "web", 8080)),
    ("L", "*:80:web:8080", Forward("L", "0.0.0.0", 80, "web", 8080)),
    ("L", ":80:web:8080", Forward("L", "127.0.0.1", 80, "web", 8080)),
    ("L", "[::1]:80:[fe80::1]:22", Forward("L", "::1", 80, "fe80::1", 22)),
    ("R", "8080:127.0.0.1:3000", Forward("R", "127.0.0.1", 8080, "127.0.0.1", 3000)),
    ("R", "0.0.0.0:0:localhost:3000", Forward("R", "0.0.0.0", 0, "localhost", 3000)),
    ("D", "1080", Forward("D", "127.0.0.1", 1080)),
    ("-D", "[::1]:0", Forward("D", "::1", 0)),
])
def test_parse_forward(kind: str, text: str, expected: Forward) -> None:
    assert parse_forward(kind, text) == expected


@pytest.mark.parametrize(("kind", "text"), [
    ("L", "5432"), ("L", "5432:db"), ("L", "x:db:5432"), ("L", "1:db:0"), ("L", "70000:db:1"),
    ("L", "1:2:3:4:5"), ("L", "1:[db:5"), ("D", "a"), ("D", "1:2:3"), ("X", "1"),
    ("R", "1:bad host:2"),
])
def test_parse_forward_rejects(kind: str, text: str) -> None:
    with pytest.raises(UsageError):
        parse_forward(kind, text)


def test_forward_describes_itself() -> None:
    assert parse_forward("L", "0:db:5432").target == "db:5432"
    assert parse_forward("L", "[::1]:1:[::2]:3").spec == "[::1]:1:[::2]:3"
    assert parse_forward("D", "1080").target == "socks"


@pytest.mark.parametrize(("text", "expected"), [
    ("host", SSHTarget("host")),
    ("bob@host", SSHTarget("host", "bob")),
    ("bob@host:2222", SSHTarget("host", "bob", 2222)),
    ("ssh://bob@10.0.0.1:22", SSHTarget("10.0.0.1", "bob", 22)),
    ("[::1]:2222", SSHTarget("::1", None, 2222)),
    ("a@b@host", SSHTarget("host", "a@b")),
])
def test_parse_target(text: str, expected: SSHTarget) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["", "@host", "host:0", "host:x", "[::1", "bob@"])
def test_parse_target_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_target(text)


# -- SOCKS ------------------------------------------------------------------------------
SOCKS5_NAME = b"\x05\x01\x00" + b"\x05\x01\x00\x03\x07example" + struct.pack("!H", 80)
SOCKS5_V4 = b"\x05\x02\x02\x00" + b"\x05\x01\x00\x01\x7f\x00\x00\x01" + struct.pack("!H", 22)
SOCKS5_V6 = b"\x05\x01\x00" + b"\x05\x01\x00\x04" + bytes(15) + b"\x01" + struct.pack("!H", 9)
SOCKS4 = b"\x04\x01" + struct.pack("!H", 443) + bytes([10, 0, 0, 7]) + b"user\0"
SOCKS4A = b"\x04\x01" + struct.pack("!H", 80) + b"\0\0\0\x01" + b"\0" + b"example.org\0"


def _feed(data: bytes, mode: str) -> tuple[SocksHandshake, bytes]:
    hs = SocksHandshake()
    out = b""
    if mode == "whole":
        out += hs.feed(data)
    elif mode == "bytewise":
        for i in range(len(data)):
            out += hs.feed(data[i:i + 1])
    else:
        out += hs.feed(data + b"TRAILING")
    return hs, out


@pytest.mark.parametrize("mode", ["whole", "bytewise", "trailing"])
@pytest.mark.parametrize(("data", "wanted", "greeting"), [
    (SOCKS5_NAME, ("example", 80), b"\x05\x00"),
    (SOCKS5_V4, ("127.0.0.1", 22), b"\x05\x00"),
    (SOCKS5_V6, ("::1", 9), b"\x05\x00"),
    (SOCKS4, ("10.0.0.7", 443), b""),
    (SOCKS4A, ("example.org", 80), b""),
])
def test_socks_requests(mode: str, data: bytes, wanted: tuple[str, int],
                        greeting: bytes) -> None:
    hs, out = _feed(data, mode)
    assert hs.request == wanted
    assert out == greeting
    assert hs.rest == (b"TRAILING" if mode == "trailing" else b"")


def test_socks_incomplete_needs_more() -> None:
    for data in (SOCKS5_NAME, SOCKS4A):
        for cut in range(len(data)):
            hs = SocksHandshake()
            hs.feed(data[:cut])
            assert hs.request is None


def test_socks_replies_in_the_clients_dialect() -> None:
    hs, _ = _feed(SOCKS5_NAME, "whole")
    assert hs.reply(True)[:2] == b"\x05\x00"
    assert hs.reply(False, 5)[:2] == b"\x05\x05"
    hs, _ = _feed(SOCKS4, "whole")
    assert hs.reply(True)[:2] == b"\x00\x5a"
    assert hs.reply(False)[:2] == b"\x00\x5b"


@pytest.mark.parametrize(("data", "reply"), [
    (b"GET / HTTP/1.1\r\n", b""),
    (b"\x05\x01\x02", b"\x05\xff"),                        # only user/password offered
    (b"\x05\x01\x00\x05\x02\x00\x01\x7f\0\0\1\0\x50", b"\x05\x07"),  # BIND
    (b"\x05\x01\x00\x05\x01\x00\x09\0\0", b"\x05\x08"),     # unknown address type
    (b"\x04\x02\x00\x50\x7f\0\0\1\0", b"\x00\x5b"),          # SOCKS4 BIND
])
def test_socks_garbage_is_refused(data: bytes, reply: bytes) -> None:
    with pytest.raises(SocksError) as info:
        SocksHandshake().feed(data)
    assert info.value.reply[:2] == reply


# -- host keys --------------------------------------------------------------------------
def test_host_key_policy(tmp_path: Path) -> None:
    asyncssh = need_module("asyncssh")
    from wirekit.ssh.hostkeys import HostKeyPolicy, fingerprint

    path = tmp_path / "known_hosts"
    key = asyncssh.generate_private_key("ssh-ed25519")
    other = asyncssh.generate_private_key("ssh-ed25519")

    refuse = HostKeyPolicy(path)
    assert not refuse.check("127.0.0.1", "127.0.0.1", 2222, key)
    assert isinstance(refuse.failure, HostKeyUnknown)
    assert fingerprint(key) in str(refuse.failure)
    assert not path.exists()

    tofu = HostKeyPolicy(path, accept_new=True)
    assert tofu.check("127.0.0.1", "127.0.0.1", 2222, key)
    assert tofu.accepted == fingerprint(key)
    assert path.read_text().startswith("[127.0.0.1]:2222 ssh-ed25519 ")
    known = tofu.load().match("127.0.0.1", "127.0.0.1", 2222)[0]
    assert {k.public_data for k in known} == {key.public_data}

    changed = HostKeyPolicy(path, accept_new=True)
    assert not changed.check("127.0.0.1", "127.0.0.1", 2222, other)
    assert isinstance(changed.failure, HostKeyChanged)
    assert "CHANGED" in str(changed.failure)
    assert len(path.read_text().splitlines()) == 1
