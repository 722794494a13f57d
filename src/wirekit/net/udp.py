"""UDP clients: a connected datagram endpoint, and request/reply with retries.

The endpoint's socket is *connected* to the peer, so the kernel drops datagrams from anyone
else and reports an ICMP "port unreachable" as ECONNREFUSED on the next receive: that is how
``wirekit connect udp://...`` can say "connection refused" although UDP has no connections.
Datagrams and errors share one queue, in arrival order, so an error is raised by the
``recv`` that would have returned the next datagram.

With ``record=`` each datagram :meth:`UDPClient.send` hands to the transport and each one
that arrives (as it arrives, read or not) is written to the recorder's file as a UDP
packet, our socket to the address the name resolved to.  A datagram the kernel then
refuses to send (reported later through ``error_received``) is still in the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from types import TracebackType
from typing import TYPE_CHECKING

from wirekit.address import Address, parse_address
from wirekit.errors import ConnectRefused, NetError, NoReply, ReadTimeout, UsageError
from wirekit.net._errors import connect_errors, io_errors

if TYPE_CHECKING:
    from wirekit.capture.recorder import Recorder
    from wirekit.capture.stream_tap import StreamLeg

__all__ = [
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "MAX_DATAGRAM",
    "UDPClient",
    "open_udp",
    "udp_request",
]

DEFAULT_TIMEOUT = 2.0  # per try
DEFAULT_RETRIES = 2  # resends after the first try
MAX_DATAGRAM = 65507  # IPv4 payload limit
QUEUE_LIMIT = 4096  # datagrams held unread before new ones are dropped (as the kernel would)

_CLOSED = object()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.dropped = 0

    def datagram_received(self, data: bytes, addr: object) -> None:
        if self.queue.qsize() >= QUEUE_LIMIT:
            self.dropped += 1
            return
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.queue.put_nowait(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait(_CLOSED)


class _RecordedProtocol(_Protocol):
    leg: StreamLeg | None = None  # set once the endpoint's addresses are known

    def datagram_received(self, data: bytes, addr: object) -> None:
        if self.leg is not None:
            self.leg.received(data)
        super().datagram_received(data, addr)


class UDPClient:
    """A UDP socket connected to one peer.  Open it with :func:`open_udp`."""

    def __init__(
        self, transport: asyncio.DatagramTransport, protocol: _Protocol, *, peer: Address
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self.peer = peer
        name = transport.get_extra_info("sockname")
        self.local = Address("udp", str(name[0]), int(name[1])) if name else Address("udp")
        remote = transport.get_extra_info("peername")  # the address the name resolved to
        self.remote = Address("udp", str(remote[0]), int(remote[1])) if remote else peer
        self.datagrams_sent = 0
        self.datagrams_received = 0

    def send(self, data: bytes) -> None:
        """Send one datagram (never blocks; UDP has no flow control)."""
        if len(data) > MAX_DATAGRAM:
            raise UsageError(
                f"a {len(data)}-byte datagram is too large for UDP (at most {MAX_DATAGRAM})"
            )
        if self._transport.is_closing():
            raise UsageError("cannot send: the UDP endpoint is closed")
        with io_errors(self.peer.host, self.peer.port):
            self._transport.sendto(data)
        self.datagrams_sent += 1

    async def recv(self, *, timeout: float | None = None) -> bytes:
        """The next datagram from the peer.

        Raises :class:`ReadTimeout` when none arrives in ``timeout`` seconds and
        :class:`ConnectRefused` when the peer's host answered "port unreachable".
        """
        try:
            item = await asyncio.wait_for(self._protocol.queue.get(), timeout)
        except TimeoutError:
            raise ReadTimeout(
                f"no datagram from {self.peer.hostport} within {timeout:g}s"
            ) from None
        if isinstance(item, bytes):
            self.datagrams_received += 1
            return item
        if item is _CLOSED:
            self._protocol.queue.put_nowait(_CLOSED)  # every later recv sees it too
            raise NetError(f"the UDP endpoint for {self.peer.hostport} is closed")
        assert isinstance(item, OSError)
        if isinstance(item, ConnectionRefusedError) or item.errno == errno.ECONNREFUSED:
            raise ConnectRefused(
                f"connection refused by {self.peer.hostport} (nothing listens on that UDP port)",
                host=self.peer.host,
                port=self.peer.port,
            ) from item
        with io_errors(self.peer.host, self.peer.port):
            raise item

    async def request(
        self, payload: bytes, *, timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES
    ) -> bytes:
        """Send ``payload`` and return the first reply, resending up to ``retries`` times."""
        if retries < 0:
            raise UsageError(f"retries must be 0 or more, not {retries}")
        tries = retries + 1
        for _ in range(tries):
            self.send(payload)
            with contextlib.suppress(ReadTimeout):
                return await self.recv(timeout=timeout)
        raise NoReply(no_reply_message(self.peer, tries), host=self.peer.host,
                      port=self.peer.port, tries=tries)

    def close(self) -> None:
        self._transport.close()

    async def aclose(self) -> None:
        self._transport.close()
        await asyncio.sleep(0)  # let connection_lost run

    async def __aenter__(self) -> UDPClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<UDPClient {self.local.hostport} -> {self.peer}>"


class _RecordedUDPClient(UDPClient):
    """A UDPClient whose datagrams, each way, a recorder writes."""

    leg: StreamLeg

    def send(self, data: bytes) -> None:
        super().send(data)
        self.leg.sent(data)


def no_reply_message(peer: Address, tries: int) -> str:
    times = "try" if tries == 1 else "tries"
    return f"no reply from {peer.hostport} after {tries} {times} (UDP may lose datagrams)"


def _udp_address(address: str | Address) -> Address:
    addr = address if isinstance(address, Address) else parse_address(
        address, default_scheme="udp", schemes=("udp",)
    )
    if addr.scheme != "udp":
        raise UsageError(f"expected a udp:// address, not {addr}")
    return addr


async def open_udp(address: str | Address, *, timeout: float = 10.0,
                   record: Recorder | None = None) -> UDPClient:
    """A UDP endpoint connected to ``address`` (``HOST:PORT`` or ``udp://HOST:PORT``).

    ``timeout`` bounds name resolution.  ``record`` (a
    :class:`wirekit.capture.recorder.Recorder`) writes each datagram sent and received,
    with its time, to the recorder's pcapng file.
    """
    addr = _udp_address(address)
    loop = asyncio.get_running_loop()
    factory = _Protocol if record is None else _RecordedProtocol
    with connect_errors(addr.host, addr.port, timeout):
        async with asyncio.timeout(timeout):
            transport, protocol = await loop.create_datagram_endpoint(
                factory, remote_addr=(addr.host, addr.port)
            )
    if record is None:
        return UDPClient(transport, protocol, peer=addr)
    from wirekit.capture.stream_tap import StreamLeg

    client = _RecordedUDPClient(transport, protocol, peer=addr)
    client.leg = StreamLeg(record, client.local, client.remote, udp=True)
    assert isinstance(protocol, _RecordedProtocol)
    protocol.leg = client.leg
    return client


async def udp_request(
    address: str | Address,
    payload: bytes,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    record: Recorder | None = None,
) -> bytes:
    """Send one datagram to ``address`` and return the first reply.

    Waits ``timeout`` seconds per try and resends up to ``retries`` times; raises
    :class:`~wirekit.errors.NoReply` ("no reply from HOST:PORT after N tries") after that.
    ``record``: write each try and the reply to a recorder's file (see :func:`open_udp`).
    """
    async with await open_udp(address, timeout=max(timeout, 1.0), record=record) as client:
        return await client.request(payload, timeout=timeout, retries=retries)
