"""One forwarded connection: a TCP socket on this machine <-> an SSH channel.

Theory of operation: two ends, each the peer of the other.  Bytes read on one end are
written to the other; when one end's write buffer fills (``pause_writing``), the other
end stops reading, so memory per connection stays bounded by the transport buffers and
the SSH window.  EOF is passed on as a half-close; when both directions have ended (or
either side fails) both ends close.  Until the channel exists, bytes from the socket are
buffered and reading is paused (uvloop may deliver data even after ``pause_reading`` in
``connection_made``).  Both sockets get TCP_NODELAY: with Nagle and delayed ACKs, small
request/response exchanges stall ~40 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any

import asyncssh

__all__ = ["ChannelEnd", "PipeStats", "SocketEnd", "set_nodelay"]


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PipeStats:
    __slots__ = ("closed", "received", "sent", "started")

    def __init__(self) -> None:
        self.sent = 0          # socket -> channel
        self.received = 0      # channel -> socket
        self.started = time.monotonic()
        self.closed = False


class SocketEnd(asyncio.Protocol):
    """The local TCP socket of a forwarded connection."""

    def __init__(self, on_close: Callable[[SocketEnd, BaseException | None], None],
                 on_open: Callable[[SocketEnd], None] | None = None) -> None:
        self._on_open = on_open
        self.label: str | None = None  # "peer -> target" once the channel is open
        self.prelude = b""  # written to the socket before any channel data (SOCKS reply)
        self.transport: asyncio.Transport | None = None
        self.peer: ChannelEnd | None = None
        self.stats = PipeStats()
        self.peername: tuple[str, int] = ("", 0)
        self._on_close = on_close
        self._early: list[bytes] = []
        self._eof_in = False
        self._eof_out = False
        self.on_data: Callable[[bytes], None] | None = None  # before attach (SOCKS handshake)

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        set_nodelay(transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peername = (peer[0], peer[1])
        if self._on_open is not None:
            self._on_open(self)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None:
            self.stats.sent += len(data)
            self.peer.write(data)
        elif self.on_data is not None:
            self.on_data(data)
        else:
            self._early.append(data)
            self.pause_reading()

    def eof_received(self) -> bool:
        self._eof_in = True
        if self.peer is not None:
            self.peer.write_eof()
            self._maybe_done()
        return True

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        peer, self.peer = self.peer, None
        if peer is not None:
            peer.close()
        if not self.stats.closed:
            self.stats.closed = True
            self._on_close(self, exc)

    # used by the peer
    def attach(self, peer: ChannelEnd) -> None:
        if self.stats.closed:  # the client left while the channel was opening
            peer.peer = None
            peer.close()
            return
        self.peer = peer
        self.on_data = None
        if self.prelude and self.transport is not None:
            self.transport.write(self.prelude)
            self.prelude = b""
        early, self._early = b"".join(self._early), []
        if early:
            self.stats.sent += len(early)
            peer.write(early)
        if self._eof_in:
            peer.write_eof()
        self.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.stats.received += len(data)
            self.transport.write(data)

    def write_eof(self) -> None:
        self._eof_out = True
        if self.transport is not None and self.transport.can_write_eof():
            try:
                self.transport.write_eof()
            except OSError:
                self.close()
                return
        self._maybe_done()

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _maybe_done(self) -> None:
        if self._eof_in and self._eof_out:
            self.close()


class ChannelEnd(asyncssh.SSHTCPSession[bytes]):
    """The SSH channel of a forwarded connection."""

    def __init__(self, peer: SocketEnd) -> None:
        self.peer: SocketEnd | None = peer
        self.chan: Any = None

    def connection_made(self, chan: Any) -> None:
        self.chan = chan

    def session_started(self) -> None:
        if self.peer is not None:
            self.peer.attach(self)

    def data_received(self, data: bytes, datatype: Any) -> None:
        if self.peer is not None:
            self.peer.write(data)

    def eof_received(self) -> bool:
        if self.peer is not None:
            self.peer.write_eof()
        return True

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.chan = None
        peer, self.peer = self.peer, None
        if peer is not None:
            peer.close()

    def write(self, data: bytes) -> None:
        if self.chan is not None:
            self.chan.write(data)

    def write_eof(self) -> None:
        if self.chan is not None:
            try:
                self.chan.write_eof()
            except (OSError, asyncssh.Error, BrokenPipeError):
                self.close()

    def pause_reading(self) -> None:
        if self.chan is not None:
            self.chan.pause_reading()

    def resume_reading(self) -> None:
        if self.chan is not None:
            self.chan.resume_reading()

    def close(self) -> None:
        if self.chan is not None:
            self.chan.close()
