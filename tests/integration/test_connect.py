"""``wirekit connect`` as a subprocess against in-test servers (threads) on loopback."""

from __future__ import annotations

import os
import pty
import select
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from conftest import wait_for

TIMEOUT = 30


def wirekit(*args: str, input: bytes | None = b"", **kwargs: object):
    return subprocess.run(
        [sys.executable, "-m", "wirekit", "connect", *args],
        input=input,
        capture_output=True,
        timeout=TIMEOUT,
        **kwargs,  # type: ignore[arg-type]
    )


def one_error_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# -- servers --------------------------------------------------------------------------
@pytest.fixture
def tcp_server() -> Iterator[Callable[[Callable[[socket.socket], None]], int]]:
    """Serve every connection with ``handler(sock)`` in its own thread; returns the port."""
    servers: list[socketserver.ThreadingTCPServer] = []

    def start(handler: Callable[[socket.socket], None]) -> int:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(TIMEOUT)
                handler(self.request)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def udp_server() -> Iterator[Callable[[Callable[[int, bytes], bytes | None]], tuple[list, int]]]:
    """``reply(n, datagram)`` answers datagram number n (None: stay silent)."""
    socks: list[socket.socket] = []
    threads: list[threading.Thread] = []
    stop = threading.Event()

    def start(reply: Callable[[int, bytes], bytes | None]) -> tuple[list[bytes], int]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.05)
        socks.append(sock)
        received: list[bytes] = []

        def run() -> None:
            while not stop.is_set():
                try:
                    data, peer = sock.recvfrom(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                received.append(data)
                answer = reply(len(received), data)
                if answer is not None:
                    sock.sendto(answer, peer)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return received, sock.getsockname()[1]

    yield start
    stop.set()
    for thread in threads:
        thread.join(10)
    for sock in socks:
        sock.close()


def recv_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def echo(sock: socket.socket) -> None:
    while chunk := sock.recv(65536):
        sock.sendall(chunk)


def closed_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- TCP --------------------------------------------------------------------------------
def test_half_close_then_reply(tcp_server) -> None:
    def handler(sock: socket.socket) -> None:
        data = recv_to_eof(sock)  # only ends because connect half-closes at stdin EOF
        sock.sendall(b"got %d bytes\n" % len(data))

    port = tcp_server(handler)
    payload = bytes(range(256)) * 400
    result = wirekit(f":{port}", input=payload)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"got 102400 bytes\n"
    assert b"connected to tcp://127.0.0.1:%d" % port in result.stderr


def test_peer_half_closes_first_we_keep_sending(tcp_server) -> None:
    got: list[bytes] = []

    def handler(sock: socket.socket) -> None:
        sock.sendall(b"ready\n")
        sock.shutdown(socket.SHUT_WR)  # the peer is done talking, not listening
        got.append(recv_to_eof(sock))

    port = tcp_server(handler)
    payload = os.urandom(1 << 20)
    result = wirekit(f":{port}", input=payload)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ready\n"
    wait_for(lambda: got, what="the server to read to EOF")
    assert got == [payload]


def test_regular_file_and_dev_null_as_stdin(tcp_server, tmp_path) -> None:
    port = tcp_server(echo)
    path = tmp_path / "in.bin"
    path.write_bytes(b"\x00file\xff" * 1000)
    with path.open("rb") as f:
        result = wirekit(f":{port}", "-q", input=None, stdin=f)
    assert (result.returncode, result.stdout, result.stderr) == (0, path.read_bytes(), b"")
    with open(os.devnull, "rb") as f:
        result = wirekit(f":{port}", "-q", input=None, stdin=f)
    assert (result.returncode, result.stdout) == (0, b"")


def test_send_escapes_then_stdin(tcp_server) -> None:
    port = tcp_server(echo)
    result = wirekit(f"tcp://127.0.0.1:{port}", "--send", r"a\tb\x00\r\n", "--send", r"\\",
                     input=b"from stdin")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"a\tb\x00\r\n\\from stdin"


def test_send_file_no_stdin_until_peer_closes(tcp_server, tmp_path) -> None:
    def handler(sock: socket.socket) -> None:
        request = b""
        while not request.endswith(b"END\n"):
            request += sock.recv(65536)
        sock.sendall(b"you said: " + request)  # then close, like an HTTP/1.0 server

    port = tcp_server(handler)
    path = tmp_path / "body"
    path.write_bytes(b"body END\n")
    result = wirekit(f":{port}", "--no-stdin", "--send", "head ", "--send-file", str(path),
                     "-v", input=None, stdin=subprocess.PIPE)  # stdin left open: not read
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"you said: head body END\n"
    assert b"closed (peer closed): sent 14 bytes, received 24 bytes" in result.stderr


def test_no_stdin_wait_ends_a_quiet_session(tcp_server) -> None:
    port = tcp_server(echo)  # echoes and never closes first
    result = wirekit(f":{port}", "--no-stdin", "--send", "ping", "--wait", "0.3", "-v")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ping"
    assert b"closed (idle)" in result.stderr


def test_hex_tags_both_directions(tcp_server) -> None:
    port = tcp_server(echo)
    result = wirekit(f":{port}", "--hex", "-q", "--send", "hello", input=b"\x00\x01")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello\x00\x01"
    err = result.stderr.decode()
    assert ">> sent 5 bytes at offset 0 (+" in err
    assert ">> sent 2 bytes at offset 5 (+" in err
    assert "<< received" in err and "at offset 0 (+" in err
    assert "00000000  68 65 6c 6c 6f" in err and "|hello|" in err
    assert "00000005  00 01" in err


def test_peer_reset_is_an_error(tcp_server) -> None:
    def handler(sock: socket.socket) -> None:
        sock.recv(10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # with linger 0: RST instead of FIN

    port = tcp_server(handler)
    result = wirekit(f":{port}", "--no-stdin", "--send", "x")
    assert result.returncode == 1
    line = one_error_line(result.stderr.replace(b"connected to tcp://127.0.0.1:%d\n" % port, b""))
    assert line == f"wirekit: error: connection reset by 127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("address", "code", "message"),
    [
        ("nothing-here.invalid:80", 1, "wirekit: error: could not resolve 'nothing-here.invalid'"),
        ("localhost", 2, "wirekit: error: address 'localhost' has no port"),
        ("127.0.0.1:99999", 2, "wirekit: error: port 99999 in '127.0.0.1:99999' is out of range"),
        ("[::1:80", 2, "wirekit: error: unclosed '['"),
        ("tls://127.0.0.1:99999", 2, "wirekit: error: port 99999 in 'tls://127.0.0.1:99999'"),
    ],
)
def test_failures_are_one_line(address: str, code: int, message: str) -> None:
    result = wirekit(address, "--timeout", "5")
    assert result.returncode == code
    assert one_error_line(result.stderr).startswith(message)


def test_refused() -> None:
    port = closed_port()
    result = wirekit(f"127.0.0.1:{port}")
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert line == f"wirekit: error: connection refused by 127.0.0.1:{port}"


def test_bad_escape_is_a_usage_error() -> None:
    result = wirekit(":1", "--send", r"\q")
    assert result.returncode == 2
    assert "unknown escape \\q" in one_error_line(result.stderr)


def test_help_has_examples() -> None:
    result = subprocess.run([sys.executable, "-m", "wirekit", "connect", "--help"],
                            capture_output=True, timeout=TIMEOUT)
    assert result.returncode == 0
    assert b"Examples:\n    wirekit connect :12345 --send 'GET TIME'" in result.stdout


# -- UDP --------------------------------------------------------------------------------
def test_udp_sends_and_lines_are_datagrams(udp_server) -> None:
    received, port = udp_server(lambda n, data: b"[" + data + b"]")
    result = wirekit(f"udp://127.0.0.1:{port}", "--send", "one", "--send", r"two\n",
                     input=b"line a\nline b\nno newline")
    assert result.returncode == 0, result.stderr
    assert received == [b"one", b"two\n", b"line a\n", b"line b\n", b"no newline"]
    assert result.stdout == b"[one][two\n][line a\n][line b\n][no newline]"


def test_udp_retries_then_gives_up(udp_server) -> None:
    received, port = udp_server(lambda n, data: None)
    result = wirekit(f"udp://:{port}", "--send", "hello?", "--timeout", "0.1", "--retries", "2",
                     "--no-stdin")
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"wirekit: error: no reply from 127.0.0.1:{port} after 3 tries (UDP may lose datagrams)"
    )
    assert "resending (try 2 of 3)" in err
    assert received == [b"hello?"] * 3


def test_udp_lost_datagram_is_resent(udp_server) -> None:
    received, port = udp_server(lambda n, data: None if n == 1 else b"pong")
    result = wirekit(f"udp://:{port}", "--send", "ping", "--timeout", "0.2", "--no-stdin")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"pong"
    assert received == [b"ping", b"ping"]


def test_udp_refused() -> None:
    port = closed_port(socket.SOCK_DGRAM)
    result = wirekit(f"udp://127.0.0.1:{port}", "--send", "x", "--no-stdin", "-q")
    assert result.returncode == 1
    assert one_error_line(result.stderr).startswith(
        f"wirekit: error: connection refused by 127.0.0.1:{port}"
    )


# -- interactive (stdin is a terminal) ----------------------------------------------------
def _read_until(fd: int, wanted: bytes, timeout: float = 10) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while wanted not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no {wanted!r} in {data!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                pytest.fail(f"EOF before {wanted!r}; got {data!r}")
            data += chunk
    return data


@pytest.fixture
def tty_connect() -> Iterator[Callable[[str], tuple[subprocess.Popen, int]]]:
    procs: list[subprocess.Popen] = []
    fds: list[int] = []

    def start(address: str) -> tuple[subprocess.Popen, int]:
        master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "wirekit", "connect", address],
                                stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.close(slave)
        procs.append(proc)
        fds.append(master)
        return proc, master

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            stream.close()
    for fd in fds:
        os.close(fd)


def _upper_lines(sock: socket.socket) -> None:
    with sock.makefile("rb") as f:
        for line in f:
            sock.sendall(line.upper())


def test_interactive_until_ctrl_d(tcp_server, tty_connect) -> None:
    port = tcp_server(_upper_lines)
    proc, tty = tty_connect(f":{port}")
    assert proc.stdout is not None and proc.stderr is not None
    _read_until(proc.stderr.fileno(), b"> ")
    os.write(tty, b"hello\n")
    _read_until(proc.stdout.fileno(), b"HELLO\n")
    os.write(tty, b"again\n")
    _read_until(proc.stdout.fileno(), b"AGAIN\n")
    os.write(tty, b"\x04")  # Ctrl-D: half-close; the server's loop ends and it closes
    assert proc.wait(TIMEOUT) == 0


def test_interactive_ctrl_c_exits_130(tcp_server, tty_connect) -> None:
    port = tcp_server(_upper_lines)
    proc, _ = tty_connect(f":{port}")
    assert proc.stderr is not None
    _read_until(proc.stderr.fileno(), b"> ")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(TIMEOUT) == 130
