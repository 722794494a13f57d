"""The relay core: bytes both ways between two transports, with TCP's semantics kept.

Theory of operation
-------------------
A :class:`Relay` joins two asyncio Protocols, the client end and the target end.  Each
end's ``data_received`` writes straight into the other end's transport; nothing else sits
in between (no queue, no task, no copy).

    client --data_received--> [client End] --write--> target transport
    client <--write-- [target End] <--data_received-- target

Flow control.  Every transport gets write-buffer marks (``high``/``low``).  When the
target's write buffer passes ``high`` asyncio calls the *target* end's ``pause_writing``,
and we stop reading from the *client* (``pause_reading``) until the buffer falls below
``low`` (``resume_writing``).  Memory per connection is therefore bounded by about
``high`` plus one read chunk per direction, whatever the peers do.

Early bytes.  The client end exists before the target is connected.  It pauses reading in
``connection_made``, but uvloop still delivers what it had already read, so those bytes
are kept in ``early`` and written to the target first once it is connected.  Until then
the client end is a :class:`_Pending` end; on connect its class becomes :class:`_End`
(or :class:`_TappedEnd`), so the hot path never tests "are we connected yet?".

Half-close.  EOF from one side (``eof_received``) becomes ``write_eof`` on the other and
the other direction keeps flowing.  When both sides have sent EOF, both transports are
closed (``close`` flushes what is still buffered first).

Reset.  A transport lost with an error (ECONNRESET, EPIPE, ...) is a reset: the other
side is aborted with SO_LINGER 0, which sends RST instead of FIN.  A side lost without an
error and without EOF is closed gracefully on the other side.

The relay is finished once both transports are lost (or the target never connected);
then ``on_done(relay)`` runs exactly once.  ``reason`` says how it ended: closed, reset,
refused, timeout, idle, shutdown.

TLS ends.  An end whose transport is TLS (``client_tls``/``target_tls``) uses the
``_TLS*`` variants of the classes below: the same hot path, but ``eof_received`` returns
False, since a TLS transport closes itself on the peer's close_notify anyway (uvloop
warns when told otherwise).  TLS transports cannot ``write_eof``: a plaintext target's
EOF relayed towards a TLS client closes it (close_notify after what is buffered); a
plaintext client's EOF towards a TLS target is held while the target's reply flows
(until ``HOLD_LINGER`` quiet seconds), so the reply is not cut off.  See
:mod:`wirekit.net.forward_tls`.

Tap.  ``tap(direction, data, timestamp)`` sees every chunk, the same bytes object that is
written (no copy), with ``time.time()``; ``data == b""`` marks a half-close (FIN) in that
direction.  Without a tap the plain :class:`_End` class is used: no per-chunk cost at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Callable

__all__ = [
    "DEFAULT_HIGH_WATER",
    "DEFAULT_LOW_WATER",
    "DOWNSTREAM",
    "UPSTREAM",
    "Relay",
    "Tap",
    "reset_transport",
]

UPSTREAM = "up"  # client -> target
DOWNSTREAM = "down"  # target -> client

DEFAULT_HIGH_WATER = 256 * 1024
DEFAULT_LOW_WATER = 64 * 1024

Tap = Callable[[str, bytes, float], None]

_LINGER_0 = struct.pack("ii", 1, 0)


def reset_transport(transport: asyncio.BaseTransport) -> None:
    """Close ``transport`` with a TCP reset (RST) rather than a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
    transport.abort()  # type: ignore[attr-defined]


class _Base(asyncio.Protocol):
    __slots__ = ("direction", "eof", "lost", "nbytes", "out", "peer", "relay", "transport",
                 "wpaused")
    tls = False

    def __init__(self, relay: Relay, direction: str) -> None:
        self.relay = relay
        self.direction = direction
        self.transport: asyncio.Transport | None = None
        self.out: asyncio.Transport | None = None  # the other end's transport
        self.peer: _Base | None = None
        self.nbytes = 0
        self.eof = False
        self.lost = False
        self.wpaused = False

    # -- flow control: our transport's write buffer governs the *other* side's reading --
    def pause_writing(self) -> None:
        self.wpaused = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.wpaused = False
        peer = self.peer
        if peer is not None and peer.transport is not None and not (peer.eof or peer.lost):
            peer.transport.resume_reading()

    def eof_received(self) -> bool:
        if not self.eof:
            self.eof = True
            self.relay._eof(self)
        return True  # keep our write side open: the other direction may still flow

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.relay._lost(self, exc)


class _End(_Base):
    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # pragma: no cover
        raise AssertionError("an _End is made from a _Pending one")

    def data_received(self, data: bytes) -> None:
        self.nbytes += len(data)
        self.out.write(data)  # type: ignore[union-attr]


class _TappedEnd(_Base):
    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        self.nbytes += len(data)
        self.relay.tap(self.direction, data, time.time())  # type: ignore[misc]
        self.out.write(data)  # type: ignore[union-attr]


class _Pending(_Base):
    """An end whose transport is up but whose peer is not connected yet."""

    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(  # type: ignore[attr-defined]
            self.relay.high, self.relay.low)
        self.relay._made(self)

    def data_received(self, data: bytes) -> None:
        # uvloop may deliver data although reading is paused: keep it for the peer.
        self.relay.early.append(data)
        self.transport.pause_reading()  # type: ignore[union-attr]


class _TLSMixin:
    __slots__ = ()
    tls = True

    def eof_received(self) -> bool:
        _Base.eof_received(self)  # type: ignore[arg-type]
        return False  # the TLS transport shuts itself down after close_notify


class _TLSEnd(_TLSMixin, _End):
    __slots__ = ()


class _TLSTappedEnd(_TLSMixin, _TappedEnd):
    __slots__ = ()


class _TLSPending(_TLSMixin, _Pending):
    __slots__ = ()


_JOINED = {(False, False): _End, (False, True): _TappedEnd,
           (True, False): _TLSEnd, (True, True): _TLSTappedEnd}


class Relay:
    """One client connection joined to one target connection.

    Use :meth:`client_protocol` as the accepted connection's protocol and
    :meth:`target_protocol` for the outgoing one; call :meth:`fail` if the target cannot
    be reached.  ``on_start(relay, client_transport)`` runs when the client end is made
    (reading paused): the place to admit it and start connecting.  ``client`` and
    ``target`` are labels for reports (``host:port``).
    """

    __slots__ = ("_client", "_done", "_target", "client", "detail", "early", "ended",
                 "high", "low", "on_done", "on_start", "reason", "started", "tap", "target")

    HOLD_LINGER = 2.0  # seconds of quiet after a held client FIN before close_notify

    def __init__(
        self,
        *,
        client: str = "",
        target: str = "",
        on_done: Callable[[Relay], None] | None = None,
        on_start: Callable[[Relay, asyncio.Transport], None] | None = None,
        tap: Tap | None = None,
        high: int = DEFAULT_HIGH_WATER,
        low: int = DEFAULT_LOW_WATER,
        client_tls: bool = False,
        target_tls: bool = False,
    ) -> None:
        self.client = client
        self.target = target
        self.on_done = on_done
        self.on_start = on_start
        self.tap = tap
        self.high = high
        self.low = low
        self.early: list[bytes] = []
        self.started = time.monotonic()
        self.ended = 0.0
        self.reason = ""
        self.detail = ""
        self._client = (_TLSPending if client_tls else _Pending)(self, UPSTREAM)
        self._target = (_TLSPending if target_tls else _Pending)(self, DOWNSTREAM)
        self._done = False

    # -- what the owner uses ----------------------------------------------------------
    def client_protocol(self) -> asyncio.Protocol:
        return self._client

    def target_protocol(self) -> asyncio.Protocol:
        return self._target

    @property
    def bytes_up(self) -> int:
        """Bytes read from the client (and written towards the target)."""
        return self._client.nbytes + sum(map(len, self.early))

    @property
    def bytes_down(self) -> int:
        return self._target.nbytes

    @property
    def activity(self) -> int:
        """A number that changes whenever a byte moves (for idle detection)."""
        return self._client.nbytes + self._target.nbytes + len(self.early)

    @property
    def done(self) -> bool:
        return self._done

    @property
    def duration(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def connected(self) -> bool:
        return self._target.transport is not None

    def fail(self, reason: str, detail: str = "") -> None:
        """The target could not be reached: reset the client at once."""
        if self._done or self.reason:
            return
        self.reason, self.detail = reason, detail
        self.early.clear()
        t = self._client.transport
        if t is not None and not self._client.lost:
            reset_transport(t)
        else:
            self._finish()

    def close(self, reason: str, *, reset: bool = False) -> None:
        """End the relay from outside (idle timeout, shutdown).

        A transport already closing (waiting to flush to a peer that does not read) is
        reset: a second close must not wait again.
        """
        if self._done:
            return
        if not self.reason:
            self.reason = reason
        for end in (self._client, self._target):
            t = end.transport
            if t is not None and not end.lost:
                if reset or t.is_closing():
                    reset_transport(t)
                else:
                    t.close()
        if self._target.transport is None and self._client.lost:
            self._finish()

    def abort(self, reason: str) -> None:
        self.close(reason, reset=True)

    # -- callbacks from the ends ------------------------------------------------------
    def _made(self, end: _Base) -> None:
        if end is self._client:
            end.transport.pause_reading()  # type: ignore[union-attr]
            if self.on_start is not None:
                self.on_start(self, end.transport)  # type: ignore[arg-type]
            return
        # The target is connected: join the two ends.
        client, target = self._client, self._target
        if client.lost or self.reason:
            # The client left (or we gave up) while we were connecting.
            target.transport.close()  # type: ignore[union-attr]
            return
        tapped = self.tap is not None
        client.__class__ = _JOINED[client.tls, tapped]  # type: ignore[assignment]
        target.__class__ = _JOINED[target.tls, tapped]  # type: ignore[assignment]
        # uvloop caches the protocol's bound methods: make it look them up again.
        client.transport.set_protocol(client)  # type: ignore[union-attr]
        target.transport.set_protocol(target)  # type: ignore[union-attr]
        client.peer, target.peer = target, client
        client.out, target.out = target.transport, client.transport
        if self.early:
            early, self.early = self.early, []
            for chunk in early:
                client.data_received(chunk)
        if client.eof:
            client.eof = False
            client.eof_received()
        elif not target.wpaused:
            client.transport.resume_reading()  # type: ignore[union-attr]

    def _eof(self, end: _Base) -> None:
        peer = end.peer
        if peer is None:
            return  # not connected yet: _made replays the EOF
        if self.tap is not None:
            self.tap(end.direction, b"", time.time())
        t = peer.transport
        if t is not None and not peer.lost:
            if peer.eof:
                # Both directions are done: close both (close flushes buffered bytes).
                if not self.reason:
                    self.reason = "closed"
                t.close()
                end.transport.close()  # type: ignore[union-attr]
            elif t.can_write_eof():
                t.write_eof()
            elif end.direction == UPSTREAM and not end.tls:
                self._hold(t)  # a plaintext client's FIN towards TLS: see the module doc
            else:
                t.close()

    def _hold(self, t: asyncio.Transport) -> None:
        """Close ``t`` (TLS: close_notify) once nothing has moved for HOLD_LINGER seconds."""
        loop = asyncio.get_running_loop()
        seen = self.activity

        def check() -> None:
            nonlocal seen
            if self._done or t.is_closing():
                return
            if self.activity == seen:
                t.close()
            else:
                seen = self.activity
                loop.call_later(self.HOLD_LINGER, check)

        loop.call_later(self.HOLD_LINGER, check)

    def _lost(self, end: _Base, exc: Exception | None) -> None:
        peer = end.peer if end.peer is not None else (
            self._target if end is self._client else self._client)
        if exc is not None and not self.reason:
            self.reason = "reset"
            self.detail = _describe(exc)
        pt = peer.transport
        if pt is not None and not peer.lost:
            if exc is not None:
                reset_transport(pt)
            else:
                if not self.reason:
                    self.reason = "closed"
                pt.close()
        elif peer.transport is None and end is self._client:
            # The target was never connected; the owner's connect attempt will see it.
            if not self.reason:
                self.reason = "closed"
            if self.early:
                self.early = []
        if peer.lost or peer.transport is None:
            self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        self.ended = time.monotonic()
        if not self.reason:
            self.reason = "closed"
        if self.on_done is not None:
            self.on_done(self)

    def target_gone(self) -> None:
        """The connect attempt is over without a target transport: finish if possible."""
        if self._target.transport is None and self._client.lost:
            self._finish()

    def __repr__(self) -> str:
        state = self.reason or ("open" if self.connected else "connecting")
        return f"<Relay {self.client} -> {self.target} {state} up={self.bytes_up} " \
               f"down={self.bytes_down}>"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
