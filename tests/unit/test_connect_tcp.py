"""wirekit.connect against in-test asyncio servers on loopback."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from conftest import need_module, require
from wirekit import errors
from wirekit.net import tcp
from wirekit.net.tcp import connect

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.fixture
async def talker() -> AsyncIterator[Callable[[bytes, bool], Awaitable[int]]]:
    """A server that sends fixed bytes, then closes (or keeps the connection open)."""
    servers: list[asyncio.Server] = []
    held: list[asyncio.StreamWriter] = []

    async def start(payload: bytes, close: bool = True) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(payload)
            await writer.drain()
            if close:
                writer.close()
            else:
                held.append(writer)

        server, port = await _serve(handle)
        servers.append(server)
        return port

    yield start
    for writer in held:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()


def closed_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nobody listens on: bind one, note it, close it."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_recv_helpers_split_the_stream(talker) -> None:
    port = await talker(b"line one\nABCDEFrest:tail")
    async with await connect(f"127.0.0.1:{port}") as conn:
        assert conn.peer.port == port
        assert conn.local.host == "127.0.0.1"
        assert await conn.recvline(timeout=5) == b"line one\n"
        assert await conn.recv_exactly(6, timeout=5) == b"ABCDEF"
        assert await conn.recv_until(b":", timeout=5) == b"rest:"
        with pytest.raises(errors.PeerClosed) as info:
            await conn.recv_exactly(10, timeout=5)
        assert info.value.partial == b"tail"
        assert isinstance(info.value, EOFError)
        assert await conn.recv(timeout=5) == b""
        assert conn.bytes_received == len(b"line one\nABCDEFrest:tail")


async def test_recv_until_peer_closes_first(talker) -> None:
    port = await talker(b"no delimiter here")
    async with await connect(f":{port}") as conn:
        with pytest.raises(errors.PeerClosed, match="closed before sending") as info:
            await conn.recv_until(b"\r\n\r\n", timeout=5)
        assert info.value.partial == b"no delimiter here"


async def test_read_timeout_is_a_timeout_error(talker) -> None:
    port = await talker(b"", close=False)
    async with await connect(f"tcp://127.0.0.1:{port}") as conn:
        with pytest.raises(TimeoutError) as info:
            await conn.recvline(timeout=0.05)
        assert isinstance(info.value, errors.ReadTimeout)
        assert f"127.0.0.1:{port}" in str(info.value)


async def test_send_and_half_close_reach_the_peer() -> None:
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # to EOF: needs our half-close
        writer.write(b"got %d\n" % len(data))
        await writer.drain()
        writer.close()
        got.set_result(data)

    server, port = await _serve(handle)
    async with server:
        async with await connect(f":{port}") as conn:
            await conn.send(b"abc")
            await conn.sendline("def")
            await conn.shutdown_write()
            assert await conn.recvline(timeout=5) == b"got 7\n"
            assert conn.bytes_sent == 7
        assert await asyncio.wait_for(got, 5) == b"abcdef\n"


async def test_nodelay_is_set(talker) -> None:
    port = await talker(b"x")
    async with await connect(f":{port}") as conn:
        sock = conn.writer.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_refused() -> None:
    port = closed_port()
    with pytest.raises(ConnectionRefusedError) as info:
        await connect(f"127.0.0.1:{port}", timeout=5)
    assert isinstance(info.value, errors.ConnectRefused)
    assert str(info.value) == f"connection refused by 127.0.0.1:{port}"
    assert (info.value.host, info.value.port) == ("127.0.0.1", port)


async def test_unresolvable_name() -> None:
    # .invalid never resolves (RFC 2606); a short timeout bounds a slow resolver.
    with pytest.raises((errors.ResolveError, errors.ConnectTimeout)) as info:
        await connect("nothing-here.invalid:80", timeout=5)
    if isinstance(info.value, errors.ResolveError):
        assert str(info.value) == "could not resolve 'nothing-here.invalid'"
    else:
        assert "resolving 'nothing-here.invalid'" in str(info.value)


async def test_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(loop: object, infos: object) -> socket.socket:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(tcp, "connect_any", never)
    with pytest.raises(TimeoutError) as info:
        await connect("127.0.0.1:9", timeout=0.05)
    assert isinstance(info.value, errors.ConnectTimeout)
    assert str(info.value) == "timed out connecting to 127.0.0.1:9 after 0.05s"


async def test_resolve_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async def slow(*args: object, **kwargs: object) -> list[object]:
        await asyncio.Event().wait()
        return []

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", slow)
    with pytest.raises(errors.ConnectTimeout, match=r"timed out resolving 'slow\.example'"):
        await connect("slow.example:80", timeout=0.05)


async def test_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    async def unreachable(loop: object, infos: object) -> socket.socket:
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(tcp, "connect_any", unreachable)
    with pytest.raises(errors.NetworkUnreachable, match="network unreachable: cannot reach"):
        await connect("192.0.2.1:80", timeout=5)


async def test_most_telling_failure_wins() -> None:
    """localhost may be ::1 and 127.0.0.1: 'refused' beats 'unreachable'."""
    port = closed_port()
    loop = asyncio.get_running_loop()
    infos = [
        (socket.AF_INET, socket.SOCK_STREAM, 0, "", ("127.0.0.1", port)),
        (socket.AF_INET, socket.SOCK_STREAM, 0, "", ("127.0.0.1", port)),
    ]
    with pytest.raises(ConnectionRefusedError):
        await tcp.connect_any(loop, infos)


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("unix:/tmp/wirekit-test.sock", "not supported here"),
        ("udp://127.0.0.1:53", "not supported here"),
        ("127.0.0.1", "has no port"),
    ],
)
async def test_usage_errors(address: str, message: str) -> None:
    with pytest.raises(errors.UsageError, match=message):
        await connect(address)


async def test_public_api_name() -> None:
    import wirekit

    assert wirekit.connect is connect


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


async def test_ipv6_literal() -> None:
    require(_ipv6_loopback(), "no IPv6 loopback on this machine (CI has one)")
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"v6\n")
        writer.close()

    server = await asyncio.start_server(handle, "::1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, await connect(f"[::1]:{port}", timeout=5) as conn:
        assert conn.peer.host == "::1"
        assert conn.peer.hostport == f"[::1]:{port}"
        assert await conn.recvline(timeout=5) == b"v6\n"


def test_on_uvloop_too() -> None:
    """The CLI runs on uvloop when installed: connect, read, refuse the same way there."""
    need_module("uvloop")
    from wirekit.net.runtime import run

    async def main() -> tuple[bytes, str]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"fast\n")
            writer.close()

        server, port = await _serve(handle)
        async with server, await connect(f":{port}") as conn:
            line = await conn.recvline(timeout=5)
        refused = closed_port()
        try:
            await connect(f":{refused}", timeout=5)
        except errors.ConnectRefused as exc:
            return line, str(exc)
        return line, "connected?"

    line, message = run(main(), use_uvloop=True)
    assert line == b"fast\n"
    assert message.startswith("connection refused by 127.0.0.1:")
