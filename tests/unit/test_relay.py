"""The relay core in-process, on both event loops (stdlib asyncio and uvloop).

Each scenario runs a forwarder plus a target in one loop on loopback, with raw sockets
for the client so that FIN and RST can be told apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest

from conftest import async_wait_for, require
from wirekit.net.forward import ConnectionEnded, forward
from wirekit.net.gate import Limits
from wirekit.net.relay import DOWNSTREAM, UPSTREAM, Relay
from wirekit.net.runtime import loop_factory, uvloop_available

LOOPS = ["asyncio", "uvloop"]


def run_on(loop_name: str, scenario: Callable[[], Awaitable[None]]) -> None:
    if loop_name == "uvloop":
        require(uvloop_available(), "uvloop is not installed (make installs the [fast] extra)")
    with asyncio.Runner(loop_factory=loop_factory(loop_name == "uvloop")) as runner:
        runner.run(asyncio.wait_for(scenario(), 30))


async def sock_client(port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    s = socket.socket()
    s.setblocking(False)
    try:
        await loop.sock_connect(s, ("127.0.0.1", port))
    except BaseException:
        s.close()
        raise
    return s


async def recv_all(s: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    parts = []
    while chunk := await loop.sock_recv(s, 65536):
        parts.append(chunk)
    return b"".join(parts)


def rst(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


class Target:
    """A raw-socket target: accepts connections and hands them to the test."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    async def accept(self) -> socket.socket:
        conn, _ = await asyncio.get_running_loop().sock_accept(self.sock)
        conn.setblocking(False)
        return conn

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("loop_name", LOOPS)
def test_bytes_both_ways_and_events(loop_name: str) -> None:
    async def scenario() -> None:
        target = Target()
        events: list[ConnectionEnded] = []
        fwd = await forward(":0", f"127.0.0.1:{target.port}", on_event=events.append)
        loop = asyncio.get_running_loop()
        client = await sock_client(fwd.address.port)
        # Early bytes: sent before the relay can have connected to the target.
        await loop.sock_sendall(client, b"hello ")
        conn = await target.accept()
        await loop.sock_sendall(client, b"world")
        got = b""
        while len(got) < 11:
            got += await loop.sock_recv(conn, 100)
        assert got == b"hello world"
        await loop.sock_sendall(conn, b"reply")
        assert await loop.sock_recv(client, 100) == b"reply"
        client.shutdown(socket.SHUT_WR)
        assert await loop.sock_recv(conn, 100) == b""
        conn.close()
        assert await recv_all(client) == b""
        client.close()
        await async_wait_for(lambda: events)
        (ev,) = events
        assert (ev.reason, ev.bytes_up, ev.bytes_down) == ("closed", 11, 5)
        assert fwd.bytes_up == 11 and fwd.bytes_down == 5 and fwd.open == 0
        await fwd.aclose()
        target.close()

    run_on(loop_name, scenario)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_half_close_keeps_other_direction_flowing(loop_name: str) -> None:
    async def scenario() -> None:
        target = Target()
        fwd = await forward(":0", f"127.0.0.1:{target.port}")
        loop = asyncio.get_running_loop()
        client = await sock_client(fwd.address.port)
        conn = await target.accept()
        await loop.sock_sendall(client, b"request")
        client.shutdown(socket.SHUT_WR)
        assert await recv_all(conn) == b"request"  # the target sees EOF
        # ... and its reply, sent after that EOF, still reaches the client.
        reply = os.urandom(1 << 20)
        await loop.sock_sendall(conn, reply)
        conn.shutdown(socket.SHUT_WR)
        assert await recv_all(client) == reply
        conn.close()
        client.close()
        await async_wait_for(lambda: fwd.open == 0)
        await fwd.aclose()
        target.close()

    run_on(loop_name, scenario)


@pytest.mark.parametrize("loop_name", LOOPS)
@pytest.mark.parametrize("who", ["target", "client"])
def test_reset_becomes_reset(loop_name: str, who: str) -> None:
    async def scenario() -> None:
        target = Target()
        events: list[ConnectionEnded] = []
        fwd = await forward(":0", f"127.0.0.1:{target.port}", on_event=events.append)
        loop = asyncio.get_running_loop()
        client = await sock_client(fwd.address.port)
        conn = await target.accept()
        await loop.sock_sendall(client, b"ping")
        assert await loop.sock_recv(conn, 10) == b"ping"
        resetter, other = (conn, client) if who == "target" else (client, conn)
        rst(resetter)
        with pytest.raises(ConnectionResetError):
            # A clean FIN would read b"" here instead.
            while await loop.sock_recv(other, 100):
                pass
        other.close()
        await async_wait_for(lambda: events)
        assert events[0].reason == "reset"
        await fwd.aclose()
        target.close()

    run_on(loop_name, scenario)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_refused_target_resets_client_and_keeps_listening(loop_name: str) -> None:
    async def scenario() -> None:
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        port = dead.getsockname()[1]
        dead.close()  # nothing listens there now
        events: list[ConnectionEnded] = []
        fwd = await forward(":0", f"127.0.0.1:{port}", on_event=events.append)
        loop = asyncio.get_running_loop()
        for _ in range(3):
            client = await sock_client(fwd.address.port)
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(loop.sock_recv(client, 10), 5)
            client.close()
        await async_wait_for(lambda: len(events) == 3)
        assert {e.reason for e in events} == {"refused"}
        assert "refused" in events[0].detail
        assert fwd.failed == 3 and fwd.open == 0
        await fwd.aclose()

    run_on(loop_name, scenario)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_tap_sees_every_chunk_and_eof(loop_name: str) -> None:
    async def scenario() -> None:
        target = Target()
        seen: list[tuple[str, bytes]] = []
        fwd = await forward(":0", f"127.0.0.1:{target.port}",
                            tap=lambda info: lambda d, data, ts: seen.append((d, data)))
        loop = asyncio.get_running_loop()
        client = await sock_client(fwd.address.port)
        conn = await target.accept()
        await loop.sock_sendall(client, b"abc")
        assert await loop.sock_recv(conn, 10) == b"abc"
        await loop.sock_sendall(conn, b"xyz")
        assert await loop.sock_recv(client, 10) == b"xyz"
        client.shutdown(socket.SHUT_WR)
        conn.shutdown(socket.SHUT_WR)
        await recv_all(client)
        await recv_all(conn)
        client.close()
        conn.close()
        await async_wait_for(lambda: fwd.open == 0)
        up = b"".join(d for k, d in seen if k == UPSTREAM)
        down = b"".join(d for k, d in seen if k == DOWNSTREAM)
        assert (up, down) == (b"abc", b"xyz")
        assert (UPSTREAM, b"") in seen and (DOWNSTREAM, b"") in seen
        await fwd.aclose()
        target.close()

    run_on(loop_name, scenario)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_idle_timeout_and_max_conns(loop_name: str) -> None:
    async def scenario() -> None:
        target = Target()
        events: list[ConnectionEnded] = []
        limits = Limits(max_conns=1, idle_timeout=0.3)
        fwd = await forward(":0", f"127.0.0.1:{target.port}", limits=limits,
                            on_event=events.append)
        loop = asyncio.get_running_loop()
        first = await sock_client(fwd.address.port)
        conn = await target.accept()
        with pytest.raises(ConnectionResetError):  # the reset may even beat connect() back
            second = await sock_client(fwd.address.port)
            try:
                await asyncio.wait_for(loop.sock_recv(second, 10), 5)
            finally:
                second.close()
        assert await asyncio.wait_for(recv_all(first), 10) == b""  # closed for being idle
        assert await asyncio.wait_for(recv_all(conn), 10) == b""
        first.close()
        conn.close()
        await async_wait_for(lambda: len(events) == 2)
        assert sorted(e.reason for e in events) == ["idle", "rejected"]
        assert "max-conns" in next(e.detail for e in events if e.reason == "rejected")
        await fwd.aclose()
        target.close()

    run_on(loop_name, scenario)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_client_gone_while_connecting(loop_name: str) -> None:
    async def scenario() -> None:
        # A target that accepts slowly: the backlog holds the connection; we never accept.
        target = Target()
        events: list[ConnectionEnded] = []
        fwd = await forward(":0", f"127.0.0.1:{target.port}", on_event=events.append)
        client = await sock_client(fwd.address.port)
        rst(client)
        await async_wait_for(lambda: events)
        assert fwd.open == 0
        await fwd.aclose()
        target.close()

    run_on(loop_name, scenario)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_idle_timeout_ends_a_pair_stuck_on_a_target_that_never_reads(loop_name: str) -> None:
    async def scenario() -> None:
        target = Target()
        events: list[ConnectionEnded] = []
        fwd = await forward(":0", f"127.0.0.1:{target.port}", on_event=events.append,
                            limits=Limits(idle_timeout=0.3))
        loop = asyncio.get_running_loop()
        client = await sock_client(fwd.address.port)
        conn = await target.accept()  # ... and never read from
        block = b"x" * (1 << 20)
        # Fill every buffer until the sender stalls; the idle timer may already fire (and
        # reset this client) while it is stalled, which is what it should do.
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            for _ in range(64):
                await asyncio.wait_for(loop.sock_sendall(client, block), 0.2)
        client.close()  # the relay cannot flush what it holds: only the idle timer ends it
        await async_wait_for(lambda: events, 20)
        assert events[0].reason == "idle" and fwd.open == 0
        conn.close()
        await fwd.aclose()
        target.close()

    run_on(loop_name, scenario)


def test_relay_counts_early_bytes() -> None:
    relay = Relay(client="c", target="t")
    relay.early.append(b"12345")
    assert relay.bytes_up == 5 and relay.activity > 0
    assert "connecting" in repr(relay)


def test_rejected_address_pair() -> None:
    with pytest.raises(ValueError, match="both sides"):
        asyncio.run(forward(":0", "udp://127.0.0.1:9"))

