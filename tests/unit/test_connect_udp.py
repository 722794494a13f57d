"""udp_request and the UDP client endpoint against in-test datagram servers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from conftest import need_module
from wirekit import errors
from wirekit.net.udp import MAX_DATAGRAM, open_udp, udp_request


class _Server(asyncio.DatagramProtocol):
    """Replies ``reply(data)`` unless it returns None; counts what arrives."""

    def __init__(self, reply: Callable[[int, bytes], bytes | None]) -> None:
        self.reply = reply
        self.received: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)
        answer = self.reply(len(self.received), data)
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)


@pytest.fixture
async def udp_server() -> AsyncIterator[Callable[..., Awaitable[tuple[_Server, int]]]]:
    transports: list[asyncio.BaseTransport] = []

    async def start(reply: Callable[[int, bytes], bytes | None]) -> tuple[_Server, int]:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Server(reply), local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
        return protocol, transport.get_extra_info("sockname")[1]

    yield start
    for transport in transports:
        transport.close()


def closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_request_reply(udp_server) -> None:
    server, port = await udp_server(lambda n, data: data.upper())
    assert await udp_request(f"udp://127.0.0.1:{port}", b"ping", timeout=5) == b"PING"
    assert await udp_request(f":{port}", b"bare address means udp here", timeout=5) == (
        b"BARE ADDRESS MEANS UDP HERE"
    )
    assert server.received == [b"ping", b"bare address means udp here"]


async def test_resends_when_the_first_datagram_is_lost(udp_server) -> None:
    server, port = await udp_server(lambda n, data: None if n == 1 else b"second time lucky")
    reply = await udp_request(f"udp://:{port}", b"hello", timeout=0.2, retries=3)
    assert reply == b"second time lucky"
    assert server.received == [b"hello", b"hello"]


async def test_no_reply_after_every_try(udp_server) -> None:
    server, port = await udp_server(lambda n, data: None)
    with pytest.raises(TimeoutError) as info:
        await udp_request(f"udp://127.0.0.1:{port}", b"anyone?", timeout=0.05, retries=2)
    assert isinstance(info.value, errors.NoReply)
    assert str(info.value) == (
        f"no reply from 127.0.0.1:{port} after 3 tries (UDP may lose datagrams)"
    )
    assert server.received == [b"anyone?"] * 3


async def test_no_retries_means_one_try(udp_server) -> None:
    server, port = await udp_server(lambda n, data: None)
    with pytest.raises(errors.NoReply, match="after 1 try "):
        await udp_request(f"udp://127.0.0.1:{port}", b"x", timeout=0.05, retries=0)
    assert len(server.received) == 1


async def test_port_unreachable_is_refused() -> None:
    port = closed_udp_port()
    with pytest.raises(ConnectionRefusedError) as info:
        await udp_request(f"udp://127.0.0.1:{port}", b"x", timeout=2, retries=1)
    assert isinstance(info.value, errors.ConnectRefused)
    assert str(info.value).startswith(f"connection refused by 127.0.0.1:{port}")


async def test_endpoint_receives_every_reply(udp_server) -> None:
    _, port = await udp_server(lambda n, data: b"reply %d" % n)
    async with await open_udp(f"udp://127.0.0.1:{port}") as client:
        assert client.peer.port == port
        assert client.local.host == "127.0.0.1"
        client.send(b"a")
        client.send(b"b")
        got = {await client.recv(timeout=5), await client.recv(timeout=5)}
        assert got == {b"reply 1", b"reply 2"}
        with pytest.raises(errors.ReadTimeout):
            await client.recv(timeout=0.02)
        assert (client.datagrams_sent, client.datagrams_received) == (2, 2)


async def test_oversized_datagram_is_a_usage_error(udp_server) -> None:
    _, port = await udp_server(lambda n, data: data)
    async with await open_udp(f"udp://127.0.0.1:{port}") as client:
        with pytest.raises(errors.UsageError, match="too large for UDP"):
            client.send(b"x" * (MAX_DATAGRAM + 1))


async def test_unresolvable_name() -> None:
    with pytest.raises((errors.ResolveError, errors.ConnectTimeout), match="resolv"):
        await udp_request("udp://nothing-here.invalid:53", b"x", timeout=5)


async def test_tcp_address_is_rejected() -> None:
    with pytest.raises(errors.UsageError):
        await udp_request("tcp://127.0.0.1:53", b"x")


async def test_public_api_name() -> None:
    import wirekit

    assert wirekit.udp_request is udp_request


def test_on_uvloop_too() -> None:
    """ICMP port unreachable must surface as ConnectRefused on uvloop as well."""
    need_module("uvloop")
    from wirekit.net.runtime import run

    port = closed_udp_port()
    with pytest.raises(errors.ConnectRefused):
        run(udp_request(f"udp://127.0.0.1:{port}", b"x", timeout=2, retries=1), use_uvloop=True)
