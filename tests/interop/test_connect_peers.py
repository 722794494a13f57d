"""``wirekit connect`` against real servers: ncat -l and socat, binary-safe, SHA-256 checked."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import free_port, need_peer, wait_for

SIZE = 3 * 1024 * 1024 + 17  # a few MiB, not a multiple of any buffer size
TIMEOUT = 60


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("connect-peers") / "payload.bin"
    path.write_bytes(os.urandom(SIZE))
    return path


@pytest.fixture
def peer() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a peer tool; every one is killed (by PID) at the end of the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


def wait_stderr(proc: subprocess.Popen[bytes], pattern: str, timeout: float = 10) -> re.Match:
    """Wait (bounded) until the peer prints ``pattern`` on stderr; fail if it exits first."""
    assert proc.stderr is not None
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    reader.start()
    regex = re.compile(pattern.encode())

    def found() -> re.Match | None:
        for line in list(lines):
            if m := regex.search(line):
                return m
        if proc.poll() is not None:
            reader.join(1)
            pytest.fail(f"{proc.args[0]} exited {proc.returncode} before {pattern!r}: {lines}")
        return None

    return wait_for(found, timeout, f"{pattern!r} from {proc.args[0]}")


def wirekit_connect(*args: str, stdin: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "wirekit", "connect", "-q", *args],
                          stdin=stdin, capture_output=True, timeout=TIMEOUT)  # type: ignore[arg-type]


def test_to_ncat_listener(peer, payload: Path, tmp_path: Path) -> None:
    ncat = need_peer("ncat")
    port = free_port()
    received = tmp_path / "ncat-received.bin"
    with received.open("wb") as out:
        # ncat half-closes at once (its stdin is empty); we must go on sending regardless.
        server = peer([ncat, "-v", "-l", "--recv-only", "127.0.0.1", str(port)], stdout=out,
                      stdin=subprocess.DEVNULL)
        wait_stderr(server, rf"Listening on 127\.0\.0\.1:{port}")
        with payload.open("rb") as f:
            result = wirekit_connect(f"127.0.0.1:{port}", stdin=f)
        assert result.returncode == 0, result.stderr
        assert server.wait(TIMEOUT) == 0  # our half-close ended its input
    assert sha256(received.read_bytes()) == sha256(payload.read_bytes())


def test_from_ncat_listener(peer, payload: Path) -> None:
    ncat = need_peer("ncat")
    port = free_port()
    with payload.open("rb") as f:
        server = peer([ncat, "-v", "-l", "--send-only", "127.0.0.1", str(port)], stdin=f)
    wait_stderr(server, rf"Listening on 127\.0\.0\.1:{port}")
    result = wirekit_connect(f"tcp://127.0.0.1:{port}", "--no-stdin", stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == SIZE
    assert sha256(result.stdout) == sha256(payload.read_bytes())


def test_through_socat_cat_both_ways(peer, payload: Path) -> None:
    """socat runs `cat`: every byte goes out and comes back while we are still sending."""
    socat = need_peer("socat")
    server = peer([socat, "-d", "-d", "-t", "30", "TCP-LISTEN:0,bind=127.0.0.1", "EXEC:cat"])
    port = wait_stderr(server, r"listening on AF=2 127\.0\.0\.1:(\d+)").group(1).decode()
    with payload.open("rb") as f:
        result = wirekit_connect(f":{port}", stdin=f)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == SIZE
    assert sha256(result.stdout) == sha256(payload.read_bytes())


def test_udp_against_socat(peer) -> None:
    socat = need_peer("socat")
    port = free_port()
    server = peer([socat, "-d", "-d", f"UDP-RECVFROM:{port},bind=127.0.0.1", "EXEC:tr a-z A-Z"])
    wait_stderr(server, rf"receiving on AF=2 127\.0\.0\.1:{port}")
    result = wirekit_connect(f"udp://127.0.0.1:{port}", "--send", r"hello socat\n",
                             "--no-stdin", stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"HELLO SOCAT\n"
