"""Recording any asyncio Protocol's connection: ``serve`` and ``tunnel`` listeners.

:func:`recording_factory` wraps a protocol factory.  Each connection's protocol is put
behind a :class:`_Tapped` protocol, and the protocol sees a :class:`_TappedTransport`
proxy: bytes read are the peer's (``c``, the client), bytes written are ours (``s``).
``write_eof``/``close`` are our FIN, ``abort`` our RST; an EOF read is the client's FIN,
a connection lost with an error the client's RST.  The recorded leg is the accepted
connection itself (peer address <-> our listening address), as a capture would show it.

A connection wirekit opens itself (``tunnel -R``'s connection to the local target, the
TCP connection to the SSH server) is recorded the other way round
(:func:`recording_client_factory`): our socket is the client, bytes read are the server's.
asyncio's ``abort()`` closes such a socket without ``SO_LINGER``, so the kernel sends a FIN
(asyncssh ends every connection that way): recorded as our FIN, not an RST.

A TLS listener (``serve tls://``) is recorded as the ciphertext that crossed the wire
(:func:`recording_tls_factory`): its context records every connection
(:func:`wirekit.capture.tls_record.record_context`) and the protocol binds that leg once
the handshake is done and ends it (FINs, or an RST when the connection was lost with an
error).  The plaintext the service reads and writes is recorded as above, as a second leg
on the recorder's second interface.

A UDP listener (``serve SERVICE udp://``) is recorded datagram by datagram
(:func:`recording_datagrams`): each peer's datagrams and the replies sent to it are
one UDP conversation with the listening address.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wirekit.capture.flows import TcpLeg, UdpLeg

if TYPE_CHECKING:
    from wirekit.capture.recorder import Recorder

__all__ = ["recording_client_factory", "recording_datagrams", "recording_factory",
           "recording_tls_factory"]


class _TappedTransport:
    """The transport a recorded protocol writes to: every write is also recorded."""

    __slots__ = ("_leg", "_ours", "_t")

    def __init__(self, transport: Any, leg: TcpLeg, ours: str = "s") -> None:
        self._t = transport
        self._leg = leg
        self._ours = ours  # "s" on an accepted connection, "c" on one we opened

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self._leg.data(self._ours, bytes(data), time.time_ns())
        self._t.write(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def write_eof(self) -> None:
        self._leg.fin(self._ours, time.time_ns())
        self._t.write_eof()

    def close(self) -> None:
        if not self._t.is_closing():
            self._leg.fin(self._ours, time.time_ns())
        self._t.close()

    def abort(self) -> None:
        if self._ours == "c":  # our socket, no SO_LINGER: the kernel sends a FIN (an RST
            # only if unread data waits in its receive queue, which is not tracked here)
            self._leg.fin("c", time.time_ns())
        else:
            self._leg.reset("s", time.time_ns())
        self._t.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


def _endpoints(transport: Any) -> tuple[tuple[str, int], tuple[str, int]] | None:
    """(peer, local) of a connected transport, or None when it has no IP addresses."""
    peer = transport.get_extra_info("peername")
    local = transport.get_extra_info("sockname")
    if isinstance(peer, tuple) and isinstance(local, tuple):
        return (str(peer[0]), int(peer[1])), (str(local[0]), int(local[1]))
    return None


def _end(leg: TcpLeg, exc: Exception | None, theirs: str) -> None:
    """A connection is gone: FINs, or their RST when it was lost with an error."""
    if exc is not None:
        leg.reset(theirs, time.time_ns())
    else:
        leg.close(time.time_ns())


class _Wrapper(asyncio.Protocol):
    """Delegates to the wrapped protocol; ends the recorded leg when the connection goes
    (our FINs, or the client's RST when it was lost with an error)."""

    __slots__ = ("_inner", "_leg")
    _theirs = "c"  # the peer's side of the leg: the client of an accepted connection

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._leg: TcpLeg | None = None

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()  # type: ignore[no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._leg is not None:
            _end(self._leg, exc, self._theirs)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _Tapped(_Wrapper):
    """Plaintext: records what the client sends and, through the transport proxy, what
    the wrapped protocol writes."""

    __slots__ = ("_rec",)

    def __init__(self, inner: Any, rec: Recorder) -> None:
        super().__init__(inner)
        self._rec = rec

    def connection_made(self, transport: Any) -> None:
        ends = _endpoints(transport)
        if ends is not None and self._rec.active:
            peer, local = ends
            self._leg = (self._new_leg(peer, local) if self._theirs == "c"
                         else self._new_leg(local, peer))
            self._leg.open(time.time_ns())
            transport = _TappedTransport(transport, self._leg,
                                         "s" if self._theirs == "c" else "c")
        self._inner.connection_made(transport)

    def _new_leg(self, client: tuple[str, int], server: tuple[str, int]) -> TcpLeg:
        return self._rec.tcp(client, server)

    def data_received(self, data: bytes) -> None:
        if self._leg is not None:
            self._leg.data(self._theirs, data, time.time_ns())
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._leg is not None:
            self._leg.fin(self._theirs, time.time_ns())
        return self._inner.eof_received()  # type: ignore[no-any-return]


class _ClientTapped(_Tapped):
    """A connection we opened: our socket is the client, the peer the server."""

    __slots__ = ()
    _theirs = "s"

    @property
    def inner(self) -> Any:  # what the caller's factory made (asyncssh wants its own back)
        return self._inner


def recording_factory(factory: Callable[[], Any], rec: Recorder) -> Callable[[], Any]:
    """``factory`` whose connections are recorded by ``rec``."""
    def make() -> _Tapped:
        return _Tapped(factory(), rec)

    return make


def recording_client_factory(factory: Callable[[], Any], rec: Recorder) -> Callable[[], Any]:
    """``factory`` for ``loop.create_connection``: the connection we open is recorded by
    ``rec`` with our socket as the client (``.inner`` of the protocol is ``factory()``'s)."""
    def make() -> _ClientTapped:
        return _ClientTapped(factory(), rec)

    return make


class _TlsTapped(_Tapped):
    """TLS: the context records the ciphertext (its leg bound here, once the handshake is
    done); what the protocol reads and writes is the plaintext leg, on the recorder's
    second interface (the same connection drawn with
    :func:`~wirekit.capture.tls_record.plain_endpoints`)."""

    __slots__ = ("_cipher",)

    def __init__(self, inner: Any, rec: Recorder) -> None:
        super().__init__(inner, rec)
        self._cipher: TcpLeg | None = None

    @property
    def wk_preadmitted(self) -> Any:  # the TLS listener's admission, for the inner protocol
        return self._inner.wk_preadmitted

    @wk_preadmitted.setter
    def wk_preadmitted(self, value: Any) -> None:
        self._inner.wk_preadmitted = value

    def _new_leg(self, client: tuple[str, int], server: tuple[str, int]) -> TcpLeg:
        from wirekit.capture.tls_record import plain_endpoints

        return self._rec.tcp(*plain_endpoints(client, server), plain=True)

    def connection_made(self, transport: Any) -> None:
        ends = _endpoints(transport)
        cipher = getattr(transport.get_extra_info("ssl_object"), "_wk_tap", None)
        if cipher is not None and ends is not None:
            self._cipher = cipher.bind_pair(*ends)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._cipher is not None:
            _end(self._cipher, exc, self._theirs)
        super().connection_lost(exc)


def recording_tls_factory(factory: Callable[[], Any], rec: Recorder,
                          context: Any) -> Callable[[], Any]:
    """``factory`` behind a TLS ``context`` whose connections ``rec`` records as the
    ciphertext that crossed the wire, keys in Decryption Secrets Blocks."""
    from wirekit.capture.tls_record import record_context

    record_context(context, rec, server_side=True)

    def make() -> _TlsTapped:
        return _TlsTapped(factory(), rec)

    return make


class _DatagramTransport:
    """The transport a recorded datagram protocol sends with: every datagram is recorded."""

    __slots__ = ("_owner", "_t")

    def __init__(self, transport: Any, owner: _DatagramTapped) -> None:
        self._t = transport
        self._owner = owner

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if addr is not None:
            self._owner.leg(addr).data("s", bytes(data), time.time_ns())
        self._t.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


class _DatagramTapped(asyncio.DatagramProtocol):
    """A UDP listener's protocol, recorded: each peer is its own conversation with the
    listening address (datagrams each way, no handshake)."""

    __slots__ = ("_inner", "_local", "_rec")

    def __init__(self, inner: Any, rec: Recorder) -> None:
        self._inner = inner
        self._rec = rec
        self._local: tuple[str, int] = ("0.0.0.0", 0)

    def leg(self, addr: Any) -> UdpLeg:
        from wirekit.capture.relay_tap import listen_host

        peer = (str(addr[0]), int(addr[1]))
        return self._rec.udp(peer, (listen_host(self._local[0], peer[0]), self._local[1]))

    def connection_made(self, transport: Any) -> None:
        local = transport.get_extra_info("sockname")
        if isinstance(local, tuple):
            self._local = (str(local[0]), int(local[1]))
        self._inner.connection_made(_DatagramTransport(transport, self))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.leg(addr).data("c", data, time.time_ns())
        self._inner.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._inner.error_received(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)


def recording_datagrams(protocol: asyncio.DatagramProtocol,
                        rec: Recorder) -> asyncio.DatagramProtocol:
    """A UDP listener's ``protocol`` whose datagrams, each way, are recorded by ``rec``."""
    return _DatagramTapped(protocol, rec)
