"""Real peers as clients of ``wirekit serve``: ncat and socat."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

import pytest

from conftest import need_peer

CTIME = "%a %b %d %H:%M:%S %Y"


def run_peer(argv: list[str], data: bytes, timeout: float = 30) -> bytes:
    done = subprocess.run(argv, input=data, capture_output=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


@pytest.fixture
def echo_port(wirekit_proc) -> int:
    proc = wirekit_proc("serve", "echo", ":0", "-q")
    return proc.listening()[2]


def ncat_argv(port: int) -> list[str]:
    return [need_peer("ncat"), "127.0.0.1", str(port)]


def socat_argv(port: int) -> list[str]:
    return [need_peer("socat"), "-t", "10", "-", f"TCP:127.0.0.1:{port}"]


@pytest.mark.parametrize("client", [ncat_argv, socat_argv], ids=["ncat", "socat"])
def test_peer_client_through_echo_byte_exact(echo_port: int, client) -> None:
    payload = os.urandom(4 << 20)
    got = run_peer(client(echo_port), payload)
    assert len(got) == len(payload)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


@pytest.mark.parametrize("client", [ncat_argv, socat_argv], ids=["ncat", "socat"])
def test_peer_client_many_connections(echo_port: int, client) -> None:
    for i in range(5):
        assert run_peer(client(echo_port), b"line %d\n" % i) == b"line %d\n" % i


def test_ncat_asks_the_time_server(wirekit_proc) -> None:
    proc = wirekit_proc("serve", "time", ":0")
    port = proc.listening()[2]
    out = run_peer(ncat_argv(port), b"GET TIME\nEND\n")
    (line,) = out.decode().splitlines()
    assert abs(time.mktime(time.strptime(line, CTIME)) - time.time()) < 60
    proc.wait_line(r"server closed: in 13 B, out 25 B")


def test_ncat_raw_http_request(wirekit_proc) -> None:
    proc = wirekit_proc("serve", "http", ":0", "-q")
    port = proc.listening()[2]
    out = run_peer(ncat_argv(port), b"GET / HTTP/1.0\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"Content-Length: %d\r\n" % len(body) in head


def test_socat_udp_echo(wirekit_proc) -> None:
    proc = wirekit_proc("serve", "echo", "udp://127.0.0.1:0", "-q")
    port = proc.listening()[2]
    out = run_peer([need_peer("socat"), "-t", "1", "-", f"UDP:127.0.0.1:{port}"], b"datagram")
    assert out == b"datagram"
