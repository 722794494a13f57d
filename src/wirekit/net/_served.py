"""Bookkeeping every served TCP connection shares: admission, idle timeout, the finished event.

Theory of operation
-------------------
A listener owns one :class:`ServerState`.  Each accepted socket gets a protocol object
derived from :class:`ServedProtocol`::

    connection_made --refused--> close at once, "refused" event, nothing else
          |              (ServerState.admit_or_refuse: the one admission decision)
          admitted: live set += self
          v
    data flows (subclasses add to bytes_in / bytes_out, nothing else)
          |   the sweeper saw no byte move for idle_timeout -> abort, "idle timeout"
          |   shutdown after --grace                         -> abort, "shutdown"
          v
    connection_lost --> Gate.leave(), live set -= self, one ConnectionEvent

Idle timeouts cost nothing per connection or per read: one sweeper per listener wakes up
every min(idle_timeout / 4, 1 s) and compares each live connection's byte counters with
what it saw last time, so a connection is closed between idle_timeout and
idle_timeout + one sweep period after its last byte.

The built-in services subclass this directly (an asyncio Protocol is several times
cheaper than streams); flow control is the classic one: when our write buffer passes the
high-water mark (the peer does not read) we stop reading from the peer, so memory per
connection stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wirekit.address import Address
from wirekit.net.gate import Gate

__all__ = ["ConnectionEvent", "ServedProtocol", "ServerState"]

EventCallback = Callable[["ConnectionEvent"], object]

# How a connection ended (ConnectionEvent.ended).
PEER_CLOSED = "peer closed"
SERVER_CLOSED = "server closed"
IDLE = "idle timeout"
RESET = "reset"
SHUTDOWN = "shutdown"
REFUSED = "refused"
ERROR = "error"
DATAGRAM = "datagram"
TLS_FAILED = "tls failed"  # the TLS handshake failed; the detail says why


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """One finished connection (TCP) or one answered datagram (UDP).

    ``ended`` is one of: ``peer closed``, ``server closed``, ``idle timeout``, ``reset``,
    ``shutdown``, ``refused``, ``error``, ``datagram``; ``detail`` says more (the refusal
    reason, the error message).
    """

    service: str
    peer: Address
    bytes_in: int
    bytes_out: int
    duration: float
    ended: str
    detail: str = ""
    started: float = 0.0  # wall-clock time.time() when the connection began

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": "connection" if self.peer.scheme != "udp" else "datagram",
            "service": self.service,
            "peer": self.peer.hostport,
            "scheme": self.peer.scheme,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "duration": round(self.duration, 6),
            "ended": self.ended,
            "detail": self.detail,
            "started": round(self.started, 6),
        }


class ServerState:
    """What one listener's connections share: limits, counters, the live set."""

    def __init__(self, service: str, gate: Gate, on_event: EventCallback | None,
                 scheme: str = "tcp") -> None:
        self.service = service
        self.gate = gate
        self.on_event = on_event
        self.scheme = scheme
        self.loop = asyncio.get_running_loop()
        self.idle_timeout = gate.limits.idle_timeout
        self.live: set[Any] = set()
        self.completed = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.closing = False
        # The peer's address is only needed for an ACL or an event; skip the syscall otherwise.
        self.needs_peer = bool(gate.limits.acl) or on_event is not None
        self._sweeper: asyncio.TimerHandle | None = None

    # -- admission: every TCP and TLS listener of serve() decides here -------------------------
    def admit_or_refuse(self, conn: Any, transport: Any) -> tuple[Any, float] | None:
        """Admit the protocol ``conn`` whose ``connection_made(transport)`` runs, or refuse it.

        Returns ``(peer, started)`` once admitted (``peer`` is None when neither an ACL nor
        an event needs it), or None after refusing.  A TLS listener admitted the peer before
        its handshake (``conn.wk_preadmitted``); then ``conn`` takes that stand-in's place.
        """
        pending = conn.wk_preadmitted
        if pending is not None:
            conn.wk_preadmitted = None
            self.live.discard(pending)
            self.admit(conn)
            return pending.peer, pending.started
        peer = transport.get_extra_info("peername") if self.needs_peer else None
        started = self.admit_peer(conn, peer, transport)
        return None if started is None else (peer, started)

    def admit_peer(self, conn: Any, peer: Any, closable: Any) -> float | None:
        """Let ``conn`` from ``peer`` in; return its start time (loop clock), or None.

        Refused (shutting down, ``--allow/--deny``, ``--max-conns``): ``closable`` (its
        transport or socket) is closed at once and a ``refused`` event gives the reason.
        Admitted: it counts toward ``--max-conns`` and the drain until ``gate.leave()``,
        and joins the live set (idle sweeper, shutdown).
        """
        host = peer[0] if isinstance(peer, tuple) else ""
        reason = "shutting down" if self.closing else self.gate.refusal(host)
        if reason is not None:
            closable.close()
            self.refused(peer, reason)
            return None
        started = self.loop.time()
        self.admit(conn)
        return started

    # -- the live set and the idle sweeper -----------------------------------------------------
    def admit(self, conn: Any) -> None:
        """``conn`` has ``activity()``, ``seen``, ``quiet_since`` and ``idle_expired()``."""
        conn.quiet_since = self.loop.time()
        self.live.add(conn)
        if self.idle_timeout and self._sweeper is None:
            self._sweeper = self.loop.call_later(self._period(), self._sweep)

    def _period(self) -> float:
        return min(max(self.idle_timeout / 4, 0.01), 1.0) if self.idle_timeout else 1.0

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.loop.time()
        timeout = self.idle_timeout or 0.0
        for conn in list(self.live):
            seen = conn.activity()
            if seen != conn.seen:
                conn.seen = seen
                conn.quiet_since = now
            elif now - conn.quiet_since >= timeout:
                conn.idle_expired()
        if self.live:
            self._sweeper = self.loop.call_later(self._period(), self._sweep)

    def stop_sweeping(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def peer_address(self, name: Any) -> Address:
        if isinstance(name, tuple) and len(name) >= 2:
            return Address(self.scheme, str(name[0]), int(name[1]))
        return Address("unix", path=str(name or ""))

    def finished(self, peer: Any, bytes_in: int, bytes_out: int, started: float,
                 ended: str, detail: str = "") -> None:
        """Count a finished connection and report it."""
        self.completed += 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        if self.on_event is not None:
            duration = self.loop.time() - started
            self.on_event(ConnectionEvent(
                self.service, self.peer_address(peer), bytes_in, bytes_out, duration, ended,
                detail, time.time() - duration))

    def refused(self, peer: Any, reason: str) -> None:
        if self.on_event is not None:
            self.on_event(ConnectionEvent(self.service, self.peer_address(peer), 0, 0, 0.0,
                                          REFUSED, reason, time.time()))


class ServedProtocol(asyncio.Protocol):
    """Base of the built-in services: admission, counters, idle timeout, finished event.

    Subclasses implement :meth:`opened` and ``data_received``; in ``data_received`` they
    return early unless ``self.admitted`` (uvloop may deliver data to a refused
    connection) and add to ``bytes_in`` / ``bytes_out`` (the idle sweeper watches those).
    """

    seen = 0
    quiet_since = 0.0
    # Set by a TLS listener, which admitted the peer before the handshake (tls_server.py).
    wk_preadmitted: Any = None

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.admitted = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.ended: str | None = None
        self.peer_eof = False
        self.started = 0.0
        self.peer: Any = None

    # -- lifecycle ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        admitted = self.state.admit_or_refuse(self, transport)
        if admitted is None:
            return
        self.peer, self.started = admitted
        self.admitted = True
        self.opened()
        if self.state.closing:  # only a TLS peer admitted before the shutdown began
            self.draining()

    def opened(self) -> None:
        """The connection was admitted; the service may greet or start sending."""

    def eof_received(self) -> bool | None:
        self.peer_eof = True
        return None  # close our side once the write buffer is flushed

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.admitted:
            return
        self.admitted = False
        state = self.state
        state.live.discard(self)
        state.gate.leave()
        ended = self.ended
        detail = ""
        if ended is None:
            if exc is None:
                ended = PEER_CLOSED if self.peer_eof else SERVER_CLOSED
            elif isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                ended = RESET
            else:
                ended, detail = ERROR, str(exc) or type(exc).__name__
        state.finished(self.peer, self.bytes_in, self.bytes_out, self.started, ended, detail)
        self.transport = None

    # -- flow control: stop reading while the peer does not read our replies ----------------
    def pause_writing(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(RuntimeError, AttributeError):
                self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(RuntimeError, AttributeError):
                self.transport.resume_reading()

    # -- ending ------------------------------------------------------------------------
    def draining(self) -> None:
        """The server stopped accepting; services with nothing in progress may close now."""

    def close(self, why: str = SERVER_CLOSED) -> None:
        """Close after flushing what is buffered."""
        if self.transport is not None:
            if self.ended is None:
                self.ended = why
            self.transport.close()

    def abort(self, why: str) -> None:
        """Close now, dropping what is still buffered in user space."""
        if self.transport is not None:
            if self.ended is None:
                self.ended = why
            self.transport.abort()

    def activity(self) -> int:
        return self.bytes_in + self.bytes_out

    def idle_expired(self) -> None:
        self.abort(IDLE)
