"""UDP forwarding: one upstream socket per client address.

Theory of operation
-------------------
The listening socket receives datagrams from many clients.  The first datagram from a
client address opens a *session*: a new UDP socket connected to the target, whose replies
go back (``sendto``) to that client address only, so two clients' replies never cross.
Datagrams that arrive while the session's socket is being set up wait in a small queue
(at most ``PENDING_MAX``; more are dropped, as UDP may).  A session lives until no
datagram moved either way for ``idle`` seconds; one sweeper task checks all sessions.
ICMP errors from the target (port unreachable) are counted and otherwise ignored: UDP
has no connection to reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any

from wirekit.address import Address
from wirekit.net._errors import bind_errors
from wirekit.net.forward import ConnectionEnded, ConnInfo, EventHook, TapFactory
from wirekit.net.gate import Gate, Limits
from wirekit.net.relay import DOWNSTREAM, UPSTREAM, Tap

__all__ = ["UdpForwarder"]

PENDING_MAX = 64


class _Session(asyncio.DatagramProtocol):
    __slots__ = ("client", "client_label", "down", "errors", "fwd", "pending", "started",
                 "tap", "transport", "up")

    def __init__(self, fwd: UdpForwarder, client: Any, tap: Tap | None) -> None:
        self.fwd = fwd
        self.client = client
        self.client_label = _label(client)
        self.tap = tap
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] | None = []
        self.up = 0
        self.down = 0
        self.errors = 0
        self.started = time.monotonic()

    def send(self, data: bytes) -> None:
        self.up += len(data)
        if self.tap is not None:
            self.tap(UPSTREAM, data, time.time())
        if self.transport is not None:
            self.transport.sendto(data)
        elif self.pending is not None and len(self.pending) < PENDING_MAX:
            self.pending.append(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.fwd._sessions.get(self.client) is not self:
            transport.close()  # the session ended while its socket was being set up
            return
        pending, self.pending = self.pending or [], None
        for data in pending:
            self.transport.sendto(data)  # type: ignore[union-attr]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.down += len(data)
        if self.tap is not None:
            self.tap(DOWNSTREAM, data, time.time())
        listener = self.fwd._transport
        if listener is not None:
            listener.sendto(data, self.client)

    def error_received(self, exc: Exception) -> None:
        self.errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, fwd: UdpForwarder) -> None:
        self.fwd = fwd

    def datagram_received(self, data: bytes, addr: Any) -> None:
        session = self.fwd._sessions.get(addr)
        if session is None:
            session = self.fwd._open(addr)
            if session is None:
                return
        session.send(data)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error about a reply we sent to a client that went away


class UdpForwarder:
    """A running UDP forwarder; same counters and :meth:`aclose` as the TCP one."""

    def __init__(self, listen: Address, target: Address, *, limits: Limits, idle: float,
                 on_event: EventHook | None, tap: TapFactory | None) -> None:
        self.listen = listen
        self.target = target
        self.limits = limits
        self.gate = Gate(limits)
        self.idle = idle
        self.on_event = on_event
        self._tap = tap
        self.address: Address = listen
        self.connections = 0
        self.failed = 0
        self._bytes_up = 0
        self._bytes_down = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._sessions: dict[Any, _Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def open(self) -> int:
        return len(self._sessions)

    @property
    def bytes_up(self) -> int:
        return self._bytes_up + sum(s.up for s in self._sessions.values())

    @property
    def bytes_down(self) -> int:
        return self._bytes_down + sum(s.down for s in self._sessions.values())

    @property
    def accepted(self) -> int:
        return self.gate.accepted

    @property
    def rejected(self) -> int:
        return self.gate.refused

    async def _start(self, sock: socket.socket | None, reuse_port: bool) -> None:
        loop = asyncio.get_running_loop()
        with bind_errors(self.listen.host, self.listen.port):
            if sock is not None:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Listener(self), sock=sock)
            else:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Listener(self), local_addr=(self.listen.host, self.listen.port),
                    reuse_port=reuse_port or None)
        self._transport = transport
        name = transport.get_extra_info("sockname")
        self.address = Address("udp", str(name[0]), int(name[1]))
        self._sweeper = asyncio.create_task(self._sweep())

    def _open(self, addr: Any) -> _Session | None:
        if self._closed:
            return None
        host = str(addr[0])
        refusal = self.gate.refusal(host)
        if refusal is not None:
            self._emit(ConnectionEnded("udp", _label(addr), self.target.hostport, 0, 0, 0.0,
                                       "rejected", refusal))
            return None
        tap = None
        if self._tap is not None:
            tap = self._tap(ConnInfo("udp", Address("udp", host, int(addr[1])), self.address,
                                     self.target))
        session = _Session(self, addr, tap)
        self._sessions[addr] = session
        task = asyncio.get_running_loop().create_task(self._connect(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return session

    async def _connect(self, session: _Session) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(
                lambda: session, remote_addr=(self.target.host, self.target.port))
        except OSError as exc:
            self.failed += 1
            self._end(session, "refused", exc.strerror or str(exc))

    def _end(self, session: _Session, reason: str, detail: str = "") -> None:
        if self._sessions.get(session.client) is not session:
            return
        del self._sessions[session.client]
        if session.transport is not None:
            session.transport.close()
        self.gate.leave()
        self.connections += 1
        self._bytes_up += session.up
        self._bytes_down += session.down
        self._emit(ConnectionEnded("udp", session.client_label, self.target.hostport,
                                   session.up, session.down,
                                   time.monotonic() - session.started, reason, detail))

    def _emit(self, event: ConnectionEnded) -> None:
        if self.on_event is not None:
            self.on_event(event)

    async def _sweep(self) -> None:
        interval = max(0.05, min(self.idle / 4, 5.0))
        seen: dict[_Session, tuple[int, float]] = {}
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            fresh: dict[_Session, tuple[int, float]] = {}
            for session in list(self._sessions.values()):
                activity = session.up + session.down
                last = seen.get(session)
                if last is None or last[0] != activity:
                    fresh[session] = (activity, now)
                elif now - last[1] >= self.idle:
                    self._end(session, "idle")
                else:
                    fresh[session] = last
            seen = fresh

    def stop_accepting(self) -> None:
        """UDP has no listener backlog to stop: new clients are refused once closing."""
        self._closed = True

    async def aclose(self, grace: float | None = None) -> None:
        """Stop receiving and end every session (UDP has nothing in flight to drain)."""
        if self._transport is not None and self._transport.is_closing():
            return
        self._closed = True
        if self._transport is not None:
            self._transport.close()
        for task in list(self._tasks):
            task.cancel()
        for session in list(self._sessions.values()):
            self._end(session, "shutdown")
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def __aenter__(self) -> UdpForwarder:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<UdpForwarder {self.address} -> {self.target} sessions={self.open}>"


def _label(addr: Any) -> str:
    host, port = str(addr[0]), int(addr[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
