"""wirekit.Remote: the synchronous client, against a plain socket server thread."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from wirekit import errors
from wirekit.net.sync import Remote


@pytest.fixture
def server() -> Iterator[Callable[[Callable[[socket.socket], None]], int]]:
    """Serve one connection with ``handler(conn)`` in a thread; returns the port."""
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []

    def start(handler: Callable[[socket.socket], None]) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(10)
        listeners.append(listener)

        def run() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                handler(conn)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return listener.getsockname()[1]

    yield start
    for thread in threads:
        thread.join(10)
    for listener in listeners:
        listener.close()


def _loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("wirekit-remote")]


def _recv_to_eof(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def test_remote_pwntools_style(server) -> None:
    seen: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        conn.sendall(b"Welcome\nname: ")
        seen.append(_recv_to_eof(conn))
        conn.sendall(b"\x00\x01\x02\x03bye\n")

    port = server(handler)
    with Remote(f"127.0.0.1:{port}", timeout=5) as r:
        assert len(_loop_threads()) == 1  # the private loop's
        assert r.peer.port == port
        assert r.recvline() == b"Welcome\n"
        assert r.recvuntil(b": ") == b"name: "
        r.sendline("alice")
        r.send(b"!")
        r.shutdown_write()
        assert r.recvn(4) == b"\x00\x01\x02\x03"
        assert r.recv_all() == b"bye\n"
    assert r.closed
    assert _loop_threads() == []
    assert seen == [b"alice\n!"]
    r.close()  # twice is fine


def test_remote_errors_and_timeouts(server) -> None:
    release = threading.Event()

    def handler(conn: socket.socket) -> None:
        conn.sendall(b"part")
        release.wait(10)

    port = server(handler)
    r = Remote(f":{port}", timeout=5)
    try:
        with pytest.raises(errors.ReadTimeout):
            r.recvline(timeout=0.05)
        release.set()
        with pytest.raises(errors.PeerClosed) as info:
            r.recv_exactly(100)
        assert info.value.partial == b"part"
    finally:
        r.close()
    with pytest.raises(errors.UsageError, match="closed"):
        r.send(b"late")


def test_remote_refused_leaks_no_thread() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(errors.ConnectRefused, match=f"refused by 127.0.0.1:{port}"):
        Remote(f"127.0.0.1:{port}", timeout=5)
    assert _loop_threads() == []


def test_public_api_name() -> None:
    import wirekit

    assert wirekit.Remote is Remote
