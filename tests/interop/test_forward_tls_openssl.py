"""``wirekit forward`` with TLS against OpenSSL: ``openssl s_client`` through
``forward tls://`` to a plaintext echo (TLS 1.2 and 1.3, mTLS), ``forward`` originating TLS
to ``openssl s_server`` (trusted, untrusted), and tls:// -> tls://.  Keys are made here."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from conftest import PKI, need_peer

pytestmark = pytest.mark.peer("openssl")

PAYLOAD = (os.urandom(384 * 1024).hex() + "\n").encode()  # 768 KiB of text lines, no commands
MIB = os.urandom(1 << 20)


def read_exactly(stream, n: int, timeout: float = 20.0) -> bytes:
    fd = stream.fileno()
    got = bytearray()
    deadline = time.monotonic() + timeout
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, n - len(got))
        if not chunk:
            break
        got += chunk
    return bytes(got)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(5)
        for s in (p.stdin, p.stdout, p.stderr):
            if s:
                s.close()


def s_client(procs, port: int, pki: PKI, *extra: str) -> subprocess.Popen[bytes]:
    p = subprocess.Popen([need_peer("openssl"), "s_client", "-connect", f"127.0.0.1:{port}",
                          "-CAfile", str(pki.ca), "-verify_return_error", "-quiet",
                          "-nocommands", *extra],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    procs.append(p)
    return p


def s_server(procs, pki: PKI) -> tuple[subprocess.Popen[bytes], int]:
    """openssl s_server in its default mode: what a client sends appears on its stdout and
    its stdin goes to the client.  Ready once the port listens (no probe connection)."""
    for _ in range(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # someone may take it first: then retry
        p = subprocess.Popen([need_peer("openssl"), "s_server", "-accept", f"127.0.0.1:{port}",
                              "-cert", str(pki.server[0]), "-key", str(pki.server[1]),
                              "-quiet"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        procs.append(p)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and p.poll() is None:
            if _listening(port):
                return p, port
            time.sleep(0.02)
    pytest.fail("openssl s_server did not start")


def _listening(port: int) -> bool:
    hexport = f"{port:04X}"
    with open("/proc/net/tcp") as f:
        return any(line.split()[1].endswith(":" + hexport) and line.split()[3] == "0A"
                   for line in f.readlines()[1:])


@pytest.fixture
def echo(wirekit_proc) -> int:
    p = wirekit_proc("serve", "echo", ":0", "-q")
    return p.listening()[2]


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_s_client_through_terminating_forward(wirekit_proc, procs, pki: PKI, echo: int,
                                              version: str) -> None:
    fwd = wirekit_proc("forward", "tls://:0", f":{echo}", "--cert", str(pki.server[0]),
                       "--key", str(pki.server[1]))
    port = fwd.listening()[2]
    client = s_client(procs, port, pki, version)
    client.stdin.write(PAYLOAD)
    client.stdin.flush()
    assert read_exactly(client.stdout, len(PAYLOAD)) == PAYLOAD
    client.kill()
    fwd.wait_line(r"closed: \d+ B up")


@pytest.mark.parametrize(("which", "reason"), [("client", None),
                                               ("client_stranger", "Stranger Root"),
                                               (None, "no client certificate")])
def test_s_client_mutual_tls(wirekit_proc, procs, pki: PKI, echo: int, which: str | None,
                             reason: str | None) -> None:
    fwd = wirekit_proc("forward", "tls://:0", f":{echo}", "--cert", str(pki.server[0]),
                       "--key", str(pki.server[1]), "--client-ca", str(pki.ca),
                       "--require-client-cert")
    port = fwd.listening()[2]
    extra = ("-cert", str(getattr(pki, which)[0]), "-key", str(getattr(pki, which)[1])) \
        if which else ()
    client = s_client(procs, port, pki, *extra)
    client.stdin.write(b"ping\n")
    client.stdin.flush()
    if reason is None:
        assert read_exactly(client.stdout, 5) == b"ping\n"
        return
    assert read_exactly(client.stdout, 5, timeout=5) == b""
    line = fwd.wait_line(r"tls failed \((.*)\)").group(1)
    assert reason in line


def test_forward_originates_to_s_server(wirekit_proc, procs, pki: PKI) -> None:
    server, sport = s_server(procs, pki)
    fwd = wirekit_proc("forward", ":0", f"tls://localhost:{sport}", "--ca", str(pki.ca))
    port = fwd.listening()[2]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(MIB)
        assert read_exactly(server.stdout, len(MIB)) == MIB  # byte-exact upstream
        server.stdin.write(b"pong\n")
        server.stdin.flush()
        got = b""
        while len(got) < 5:
            chunk = c.recv(5 - len(got))
            assert chunk
            got += chunk
        assert got == b"pong\n"


def test_forward_refuses_untrusted_s_server(wirekit_proc, procs, pki: PKI) -> None:
    server, sport = s_server(procs, pki)
    fwd = wirekit_proc("forward", ":0", f"tls://localhost:{sport}")  # system roots only
    port = fwd.listening()[2]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.settimeout(10)
        with pytest.raises(ConnectionResetError):
            c.sendall(b"secret\n")
            c.recv(10)
    line = fwd.wait_line(r"tls failed \((.*)\)").group(1)
    assert "not trusted" in line and "Test Root" in line
    assert read_exactly(server.stdout, 1, timeout=0.5) == b""  # nothing was relayed


def test_tls_to_tls(wirekit_proc, procs, pki: PKI) -> None:
    server, sport = s_server(procs, pki)
    fwd = wirekit_proc("forward", "tls://:0", f"tls://localhost:{sport}", "--cert",
                       str(pki.server[0]), "--key", str(pki.server[1]), "--ca", str(pki.ca))
    port = fwd.listening()[2]
    client = s_client(procs, port, pki)
    client.stdin.write(PAYLOAD)
    client.stdin.flush()
    assert read_exactly(server.stdout, len(PAYLOAD)) == PAYLOAD
    server.stdin.write(b"pong\n")
    server.stdin.flush()
    assert read_exactly(client.stdout, 5) == b"pong\n"


def test_usage_errors() -> None:
    for argv, message in [
        ([":0", ":1", "--ca", "x.pem"], "need a tls:// LISTEN or TARGET"),
        (["tls://:0", ":1", "--sni", "a"], "--sni is about a tls:// TARGET"),
        ([":0", "tls://:1", "--client-ca", "x"], "--client-ca is about a tls:// LISTEN"),
        ([":0", "tls://:1", "--splice"], "splice forwarding cannot carry TLS"),
    ]:
        r = subprocess.run([sys.executable, "-m", "wirekit", "forward", *argv], capture_output=True,
                   timeout=30)
        assert r.returncode == 2, (argv, r.stderr)
        assert message in r.stderr.decode() and b"Traceback" not in r.stderr
