"""A connected byte stream: what ``wirekit.connect`` returns and what a ``serve`` handler gets.

It wraps an asyncio StreamReader/StreamWriter pair and speaks wirekit errors only.
Reads return ``b""`` at end of stream; the ``recv_*`` helpers that need a definite
amount raise :class:`~wirekit.errors.PeerClosed` (holding what did arrive) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from types import TracebackType
from typing import TYPE_CHECKING, Self

from wirekit.address import Address
from wirekit.errors import ConnectionReset, PeerClosed, ReadTimeout, UsageError
from wirekit.net._errors import io_errors

if TYPE_CHECKING:
    from wirekit.capture.stream_tap import StreamLeg
    from wirekit.capture.tls_record import TlsLegTap

__all__ = ["Connection", "RecordedConnection"]

DEFAULT_CHUNK = 65536


class Connection:
    """One connected TCP (or TLS) stream.  Use ``async with`` or call :meth:`aclose`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer: Address,
        local: Address,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.peer = peer
        self.local = local
        self.bytes_sent = 0
        self.bytes_received = 0
        self._write_closed = False

    @classmethod
    def from_streams(
        cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, scheme: str = "tcp"
    ) -> Self:
        """Wrap a stream pair, reading both addresses from its socket."""
        return cls(reader, writer, peer=_sockname(writer, "peername", scheme),
                   local=_sockname(writer, "sockname", scheme))

    @property
    def writer(self) -> asyncio.StreamWriter:
        return self._writer

    @property
    def at_eof(self) -> bool:
        return self._reader.at_eof()

    # -- sending -----------------------------------------------------------------------
    async def send(self, data: bytes) -> None:
        """Send all of ``data``, waiting while the peer is slow to read."""
        if self._write_closed:
            raise UsageError("cannot send: the write side was shut down")
        with io_errors(self.peer.host, self.peer.port):
            self._writer.write(data)
            self._wrote(data)
            await self._writer.drain()
        self.bytes_sent += len(data)

    def _wrote(self, data: bytes) -> None:
        """``data`` went to the transport (a recording subclass writes it down)."""

    async def sendline(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        await self.send(data + b"\n")

    async def shutdown_write(self) -> None:
        """Half-close: send FIN, keep receiving until the peer closes its side."""
        if self._write_closed:
            return
        self._write_closed = True
        with io_errors(self.peer.host, self.peer.port):
            await self._writer.drain()
            if self._writer.can_write_eof():
                self._writer.write_eof()

    # -- receiving ---------------------------------------------------------------------
    async def recv(self, max_bytes: int = DEFAULT_CHUNK, *, timeout: float | None = None) -> bytes:
        """Up to ``max_bytes`` as soon as any arrive; ``b""`` once the peer has closed."""
        data = await self._read(self._reader.read(max_bytes), timeout)
        self.bytes_received += len(data)
        return data

    async def recv_exactly(self, n: int, *, timeout: float | None = None) -> bytes:
        try:
            data = await self._read(self._reader.readexactly(n), timeout)
        except asyncio.IncompleteReadError as exc:
            self.bytes_received += len(exc.partial)
            raise PeerClosed(
                f"{self.peer.hostport} closed after {len(exc.partial)} of {n} bytes",
                partial=exc.partial,
            ) from None
        self.bytes_received += len(data)
        return data

    async def recv_until(
        self, delimiter: bytes, *, timeout: float | None = None, max_bytes: int = 1 << 20
    ) -> bytes:
        """Everything up to and including ``delimiter``."""
        try:
            data = await self._read(self._reader.readuntil(delimiter), timeout)
        except asyncio.IncompleteReadError as exc:
            self.bytes_received += len(exc.partial)
            raise PeerClosed(
                f"{self.peer.hostport} closed before sending {delimiter!r}", partial=exc.partial
            ) from None
        except asyncio.LimitOverrunError:
            raise PeerClosed(
                f"no {delimiter!r} from {self.peer.hostport} in the first "
                f"{self._reader._limit} bytes"  # type: ignore[attr-defined]
            ) from None
        if len(data) > max_bytes:
            raise PeerClosed(f"no {delimiter!r} within {max_bytes} bytes", partial=data)
        self.bytes_received += len(data)
        return data

    async def recvline(self, *, timeout: float | None = None) -> bytes:
        """One line including its ``\\n``."""
        return await self.recv_until(b"\n", timeout=timeout)

    async def recv_all(self, *, timeout: float | None = None) -> bytes:
        """Everything until the peer closes."""
        data = await self._read(self._reader.read(), timeout)
        self.bytes_received += len(data)
        return data

    async def _read(self, aw: object, timeout: float | None) -> bytes:
        with io_errors(self.peer.host, self.peer.port):
            try:
                return await asyncio.wait_for(aw, timeout)  # type: ignore[arg-type]
            except TimeoutError:
                raise ReadTimeout(
                    f"no data from {self.peer.hostport} within {timeout:g}s"
                ) from None

    # -- closing -----------------------------------------------------------------------
    def close(self) -> None:
        """Close without waiting (safe to call more than once)."""
        self._writer.close()

    def abort(self) -> None:
        """Close with a reset (RST) instead of a FIN."""
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):  # the connection is gone either way
            await asyncio.wait_for(self._writer.wait_closed(), 5)

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Connection {self.local.hostport} -> {self.peer}>"


class RecordedConnection(Connection):
    """A :class:`Connection` that a recorder writes as it goes (``wirekit.connect(record=)``).

    The plaintext leg (a TLS connection's on the recorder's second interface; its
    ciphertext and keys are the ``cipher`` tap's, fed by the ssl object) is written as
    things cross the transport, whether or not the application reads them: each chunk
    sent as it is handed to the transport, each chunk received as it arrives (the stream
    reader's ``feed_data``), the peer's FIN when its end of stream arrives (``feed_eof``),
    the peer's RST when the transport reports a reset.  :meth:`shutdown_write` is our FIN
    (TCP only: TLS sends none there), closing writes the FINs still missing (client first),
    :meth:`abort` our RST."""

    _plain: StreamLeg
    _cipher: TlsLegTap | None = None
    _ended = False
    _eof_seen = False

    def record_legs(self, plain: StreamLeg, cipher: TlsLegTap | None = None) -> None:
        self._plain, self._cipher = plain, cipher
        reader = self._reader
        # What arrived while connecting, before these hooks: still in the reader's buffer.
        early = bytes(getattr(reader, "_buffer", b""))
        if early:
            plain.received(early)
        if getattr(reader, "_eof", False):
            self._peer_eof()
        feed_data, feed_eof, set_exception = (reader.feed_data, reader.feed_eof,
                                              reader.set_exception)

        def arrived(data: bytes) -> None:
            if data and not self._ended:
                plain.received(data)
            feed_data(data)

        def ended() -> None:
            self._peer_eof()
            feed_eof()

        def failed(exc: Exception) -> None:
            if isinstance(exc, ConnectionResetError):
                self._end(reset=True)
            set_exception(exc)

        reader.feed_data = arrived  # type: ignore[method-assign,assignment]
        reader.feed_eof = ended  # type: ignore[method-assign]
        reader.set_exception = failed  # type: ignore[method-assign]

    def _peer_eof(self) -> None:
        if not self._ended and not self._eof_seen:
            self._eof_seen = True
            self._plain.fin("s")

    def _wrote(self, data: bytes) -> None:
        if not self._ended:
            self._plain.sent(data)

    async def send(self, data: bytes) -> None:
        try:
            await super().send(data)
        except ConnectionReset:
            self._end(reset=True)
            raise

    async def shutdown_write(self) -> None:
        already = self._write_closed
        try:
            await super().shutdown_write()
        except ConnectionReset:
            self._end(reset=True)
            raise
        if not already and self._writer.can_write_eof() and not self._ended:
            self._plain.fin("c")  # TLS sends no FIN here

    def _end(self, *, reset: bool, side: str = "s") -> None:
        if self._ended:
            return
        self._ended = True
        cipher = self._cipher
        if cipher is not None:
            if reset and side == "c" and cipher.leg is not None and not cipher.leg.done:
                cipher.leg.reset("c", time.time_ns())
            cipher.end(reset=reset)
        self._plain.end(reset=reset, side=side)

    def close(self) -> None:
        self._end(reset=False)
        super().close()

    def abort(self) -> None:
        self._end(reset=True, side="c")
        super().abort()

    async def aclose(self) -> None:
        self._end(reset=False)
        await super().aclose()


def _sockname(writer: asyncio.StreamWriter, which: str, scheme: str) -> Address:
    name = writer.get_extra_info(which)
    if isinstance(name, tuple) and len(name) >= 2:
        return Address(scheme, str(name[0]), int(name[1]))
    return Address("unix", path=str(name or ""))
