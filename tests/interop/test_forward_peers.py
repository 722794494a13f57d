"""``wirekit forward`` with real peers: socat and ncat as the client and as the target."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import free_port, need_peer, wait_for

PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(5)
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream is not None:
                stream.close()


def echo_target(tool: str, procs: list[subprocess.Popen]) -> int:
    """An echo server made of the peer tool itself."""
    port = free_port()
    if tool == "socat":
        cmd = [need_peer("socat"), f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
               "EXEC:cat"]
    else:  # pragma: no cover - see test_ncat_as_target_both_directions
        raise AssertionError(tool)
    procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_for(lambda: listening(port), 10, f"{tool} to listen")
    return port


def client(tool: str, port: int, data: bytes) -> bytes:
    """Send ``data`` with the peer tool as the client, half-close, return the reply."""
    if tool == "socat":
        cmd = [need_peer("socat"), "-t", "10", "-", f"TCP:127.0.0.1:{port}"]
    else:
        cmd = [need_peer("ncat"), "127.0.0.1", str(port)]
    done = subprocess.run(cmd, input=data, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def test_ncat_as_target_both_directions(wirekit_proc, procs, tmp_path) -> None:
    # ncat --exec does not pass a half-close on to the program, so ncat serves files here:
    # it sends one and stores what it receives.
    down = os.urandom(2 * 1024 * 1024 + 5)
    (tmp_path / "down.bin").write_bytes(down)
    got_path = tmp_path / "got.bin"
    port = free_port()
    with (tmp_path / "down.bin").open("rb") as stdin, got_path.open("wb") as stdout:
        procs.append(subprocess.Popen([need_peer("ncat"), "-l", "127.0.0.1", str(port)],
                                      stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL))
    wait_for(lambda: _ss_listening(port), 10, "ncat to listen")
    p = wirekit_proc("forward", ":0", f"127.0.0.1:{port}")
    _, _, fport = p.listening()
    with socket.create_connection(("127.0.0.1", fport), timeout=30) as s:
        s.sendall(PAYLOAD)
        s.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := s.recv(1 << 20):
            received += chunk
    assert hashlib.sha256(received).digest() == hashlib.sha256(down).digest()
    wait_for(lambda: got_path.stat().st_size >= len(PAYLOAD), 10, "ncat to store the upload")
    assert hashlib.sha256(got_path.read_bytes()).digest() == hashlib.sha256(PAYLOAD).digest()


def _ss_listening(port: int) -> bool:
    # Probing ncat -l with a connection would use up its one connection: ask the kernel.
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            return True
    return False


def test_socat_as_target(wirekit_proc, procs) -> None:
    tool = "socat"
    target = echo_target(tool, procs)
    p = wirekit_proc("forward", ":0", f"127.0.0.1:{target}")
    _, _, port = p.listening()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(PAYLOAD)
        s.shutdown(socket.SHUT_WR)  # the tool's cat sees EOF and exits; its reply is complete
        digest, n = hashlib.sha256(), 0
        while chunk := s.recv(1 << 20):
            digest.update(chunk)
            n += len(chunk)
    assert n == len(PAYLOAD) and digest.digest() == hashlib.sha256(PAYLOAD).digest()
    p.wait_line(rf"closed: {len(PAYLOAD)} B up, {len(PAYLOAD)} B down")


@pytest.mark.parametrize("tool", ["socat", "ncat"])
def test_peer_as_client(tool: str, wirekit_proc, procs) -> None:
    target = echo_target("socat", procs)
    p = wirekit_proc("forward", ":0", f"127.0.0.1:{target}")
    _, _, port = p.listening()
    reply = client(tool, port, PAYLOAD)
    assert hashlib.sha256(reply).digest() == hashlib.sha256(PAYLOAD).digest()


@pytest.mark.parametrize("tool", ["socat", "ncat"])
def test_peer_client_sees_refused_target(tool: str, wirekit_proc) -> None:
    p = wirekit_proc("forward", ":0", f"127.0.0.1:{free_port()}")
    _, _, port = p.listening()
    if tool == "socat":
        cmd = [need_peer("socat"), "-t", "5", "-", f"TCP:127.0.0.1:{port}"]
    else:
        cmd = [need_peer("ncat"), "127.0.0.1", str(port)]
    done = subprocess.run(cmd, input=b"hello", capture_output=True, timeout=30, check=False)
    assert done.stdout == b""  # nothing came back, and the tool did not hang
    p.wait_line(r"refused")


def test_socat_udp_through_forward(wirekit_proc, procs) -> None:
    port = free_port()
    procs.append(subprocess.Popen(
        [need_peer("socat"), f"UDP-RECVFROM:{port},bind=127.0.0.1,fork", "EXEC:cat"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    p = wirekit_proc("forward", "udp://:0", f"udp://127.0.0.1:{port}")
    _, _, fport = p.listening()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)

        def answered() -> bool:
            s.sendto(b"datagram", ("127.0.0.1", fport))
            try:
                return s.recv(100) == b"datagram"
            except TimeoutError:
                return False  # socat may not have been ready yet: send again

        wait_for(answered, 15, "a UDP echo through the forwarder")
