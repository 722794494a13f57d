"""Bookkeeping every served TCP connection shares: admission, idle timeout, the finished event.

Theory of operation
-------------------
A listener owns one :class:`ServerState`.  Each accepted socket gets a protocol object
derived from :class:`ServedProtocol`::

    connection_made --Gate refuses--> close at once, "refused" event, nothing else
          |
          admitted: live set += self, idle timer armed at last_activity + idle_timeout
          v
    data flows (subclasses call touch() / update bytes_in, bytes_out)
          |   idle timer fires with no traffic for idle_timeout -> abort, "idle timeout"
          |   shutdown after --grace                              -> abort, "shutdown"
          v
    connection_lost --> Gate.leave(), live set -= self, one ConnectionEvent

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


class IdleTimer:
    """Calls ``expire()`` once nothing touched it for ``timeout`` seconds.

    ``touch()`` only stores a timestamp; the single timer handle re-arms itself lazily,
    so busy connections cost no timer churn.  ``probe`` (optional) returns a counter that
    changes with activity the owner cannot see directly (a handler's sends).
    """

    __slots__ = ("_handle", "_loop", "_probe", "_seen", "expire", "last", "timeout")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float,
                 expire: Callable[[], object], probe: Callable[[], int] | None = None) -> None:
        self._loop = loop
        self.timeout = timeout
        self.expire = expire
        self._probe = probe
        self._seen = 0
        self.last = loop.time()
        self._handle: asyncio.TimerHandle | None = loop.call_at(self.last + timeout, self._fire)

    def touch(self) -> None:
        self.last = self._loop.time()

    def _fire(self) -> None:
        now = self._loop.time()
        if self._probe is not None:
            seen = self._probe()
            if seen != self._seen:
                self._seen = seen
                self.last = now
        if now - self.last >= self.timeout:
            self._handle = None
            self.expire()
            return
        step = self.last + self.timeout
        if self._probe is not None:
            step = min(step, now + max(self.timeout / 4, 0.01))
        self._handle = self._loop.call_at(step, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class ServedProtocol(asyncio.Protocol):
    """Base of the built-in services: admission, counters, idle timeout, finished event.

    Subclasses implement :meth:`opened` and ``data_received``; in ``data_received`` they
    return early unless ``self.admitted`` (uvloop may deliver data to a refused
    connection), add to ``bytes_in`` / ``bytes_out`` and call ``self.idle.touch()``.
    """

    idle: IdleTimer | None = None

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
        state = self.state
        self.peer = transport.get_extra_info("peername")
        host = self.peer[0] if isinstance(self.peer, tuple) else ""
        reason = "shutting down" if state.closing else state.gate.refusal(host)
        if reason is not None:
            transport.close()
            state.refused(self.peer, reason)
            return
        self.admitted = True
        self.started = state.loop.time()
        state.live.add(self)
        if state.idle_timeout:
            self.idle = IdleTimer(state.loop, state.idle_timeout, self._idle_expired)
        self.opened()

    def opened(self) -> None:
        """The connection was admitted; the service may greet or start sending."""

    def eof_received(self) -> bool | None:
        self.peer_eof = True
        return None  # close our side once the write buffer is flushed

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.admitted:
            return
        self.admitted = False
        if self.idle is not None:
            self.idle.cancel()
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

    def _idle_expired(self) -> None:
        self.idle = None
        self.abort(IDLE)
