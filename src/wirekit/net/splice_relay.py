"""Zero-copy TCP forwarding with ``os.splice`` (Linux; opt-in: ``forward(..., splice=True)``).

Theory of operation
-------------------
Bytes go socket -> pipe -> socket inside the kernel and never enter Python; the event
loop only says when a socket is readable or writable (``add_reader`` / ``add_writer``).
Each direction of a pair is a :class:`_Pump`:

    readable(src): splice src -> pipe (at most the pipe's size)
                   0 bytes = EOF: shut down dst's write side once the pipe is empty
    then flush:    splice pipe -> dst until the pipe is empty
                   EAGAIN (dst full): stop reading src, wait for dst to be writable
    pipe empty:    read src again; give the pipe back to the pool

So at most one pipe's worth of bytes is in flight per direction (flow control for free),
and an idle pair holds no pipe at all (pipes are pooled).  A read or write error
(ECONNRESET, EPIPE) is a reset: the other socket is closed with SO_LINGER 0 (RST).
There is no tap here: data never reaches user space.  Same counters, reasons and
``close``/``abort`` as :class:`wirekit.net.relay.Relay`, so the forwarder treats both alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from wirekit.address import Address
from wirekit.errors import ConnectTimeout, NetError
from wirekit.net._errors import connect_errors
from wirekit.net.forward import ConnectionEnded, Forwarder

__all__ = ["PipePool", "SpliceForwarder", "SplicePair", "splice_available"]

_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_F_SETPIPE_SZ = 1031
PIPE_SIZE = 256 * 1024
_LINGER_0 = struct.pack("ii", 1, 0)


def splice_available() -> bool:
    return hasattr(os, "splice")


class PipePool:
    """Reusable non-blocking pipes; only pairs with bytes in flight hold one."""

    def __init__(self, keep: int = 64) -> None:
        self.keep = keep
        self._free: list[tuple[int, int]] = []
        self.size = PIPE_SIZE

    def get(self) -> tuple[int, int]:
        if self._free:
            return self._free.pop()
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self.size = fcntl.fcntl(w, _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            self.size = 65536
        return r, w

    def put(self, pipe: tuple[int, int], clean: bool) -> None:
        if clean and len(self._free) < self.keep:
            self._free.append(pipe)
        else:
            os.close(pipe[0])
            os.close(pipe[1])

    def close(self) -> None:
        while self._free:
            r, w = self._free.pop()
            os.close(r)
            os.close(w)


class _Pump:
    __slots__ = ("dst", "eof", "nbytes", "pair", "pending", "pipe", "src", "waiting")

    def __init__(self, pair: SplicePair, src: socket.socket, dst: socket.socket) -> None:
        self.pair = pair
        self.src = src
        self.dst = dst
        self.pipe: tuple[int, int] | None = None
        self.pending = 0
        self.nbytes = 0
        self.eof = False
        self.waiting = False  # for dst to become writable

    def readable(self) -> None:
        pair = self.pair
        if self.pipe is None:
            self.pipe = pair.pool.get()
        try:
            n = os.splice(self.src.fileno(), self.pipe[1], pair.pool.size, flags=_FLAGS)
        except BlockingIOError:
            return
        except OSError as exc:
            pair._failed(self, exc)
            return
        if n == 0:
            self.eof = True
            pair.loop.remove_reader(self.src.fileno())
        self.pending += n
        self.flush()

    def flush(self) -> None:
        pair = self.pair
        while self.pending:
            try:
                m = os.splice(self.pipe[0], self.dst.fileno(), self.pending,  # type: ignore[index]
                              flags=_FLAGS)
            except BlockingIOError:
                if not self.waiting:
                    self.waiting = True
                    pair.loop.remove_reader(self.src.fileno())
                    pair.loop.add_writer(self.dst.fileno(), self.flush)
                return
            except OSError as exc:
                pair._failed(self, exc, writing=True)
                return
            self.pending -= m
            self.nbytes += m
        if self.waiting:
            self.waiting = False
            pair.loop.remove_writer(self.dst.fileno())
            if not self.eof:
                pair.loop.add_reader(self.src.fileno(), self.readable)
        if self.pipe is not None:
            pair.pool.put(self.pipe, clean=True)
            self.pipe = None
        if self.eof:
            pair._eof(self)


class SplicePair:
    """One client socket joined to one target socket by two pumps."""

    __slots__ = ("_done", "_shut", "client", "client_sock", "detail", "down", "ended", "loop",
                 "on_done", "pool", "reason", "started", "target", "target_sock", "up")

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: PipePool,
                 client_sock: socket.socket, *, client: str, target: str,
                 on_done: Callable[[SplicePair], None]) -> None:
        self.loop = loop
        self.pool = pool
        self.client_sock = client_sock
        self.target_sock: socket.socket | None = None
        self.client = client
        self.target = target
        self.on_done = on_done
        self.up: _Pump | None = None
        self.down: _Pump | None = None
        self.started = time.monotonic()
        self.ended = 0.0
        self.reason = ""
        self.detail = ""
        self._done = False
        self._shut = 0

    # -- the Relay-like face the forwarder uses ---------------------------------------
    @property
    def bytes_up(self) -> int:
        return self.up.nbytes if self.up else 0

    @property
    def bytes_down(self) -> int:
        return self.down.nbytes if self.down else 0

    @property
    def activity(self) -> int:
        return self.bytes_up + self.bytes_down

    @property
    def connected(self) -> bool:
        return self.target_sock is not None

    @property
    def done(self) -> bool:
        return self._done

    @property
    def duration(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def start(self, target_sock: socket.socket) -> None:
        """The target is connected: start pumping both ways."""
        if self._done:
            target_sock.close()
            return
        self.target_sock = target_sock
        self.up = _Pump(self, self.client_sock, target_sock)
        self.down = _Pump(self, target_sock, self.client_sock)
        self.loop.add_reader(self.client_sock.fileno(), self.up.readable)
        self.loop.add_reader(target_sock.fileno(), self.down.readable)

    def fail(self, reason: str, detail: str = "") -> None:
        if not self.reason:
            self.reason, self.detail = reason, detail
        self._finish(reset=True)

    def close(self, reason: str, *, reset: bool = False) -> None:
        if not self.reason:
            self.reason = reason
        self._finish(reset=reset)

    def abort(self, reason: str) -> None:
        self.close(reason, reset=True)

    # -- pump callbacks ---------------------------------------------------------------
    def _eof(self, pump: _Pump) -> None:
        with contextlib.suppress(OSError):
            pump.dst.shutdown(socket.SHUT_WR)
        self._shut += 1
        if self._shut == 2:
            self.close("closed")

    def _failed(self, pump: _Pump, exc: OSError, writing: bool = False) -> None:
        self.reason = self.reason or "reset"
        self.detail = self.detail or (exc.strerror or str(exc))
        self._finish(reset=True)

    def _finish(self, *, reset: bool) -> None:
        if self._done:
            return
        self._done = True
        self.ended = time.monotonic()
        for pump in (self.up, self.down):
            if pump is not None and pump.pipe is not None:
                self.pool.put(pump.pipe, clean=False)
                pump.pipe = None
        for sock in (self.client_sock, self.target_sock):
            if sock is None or sock.fileno() < 0:
                continue
            self.loop.remove_reader(sock.fileno())
            self.loop.remove_writer(sock.fileno())
            if reset:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
            sock.close()
        self.on_done(self)


class SpliceForwarder(Forwarder):
    """A :class:`~wirekit.net.forward.Forwarder` whose pairs are :class:`SplicePair`\\ s.

    It accepts on its own non-blocking socket (``add_reader``) so that it holds plain
    sockets, not transports, and connects to the target with ``sock_connect``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lsock: socket.socket | None = None
        self._pool = PipePool()

    async def _start(self, sock: socket.socket | None, reuse_port: bool) -> None:
        from wirekit.net.workers import bind

        if sock is None:
            sock = bind(self.listen)
        sock.setblocking(False)
        self._lsock = sock
        name = sock.getsockname()
        self.address = Address(self.listen.scheme, str(name[0]), int(name[1]))
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_accept)
        self._start_sweeper()

    def stop_accepting(self) -> None:
        self._accepting = False
        if self._lsock is not None and self._lsock.fileno() >= 0:
            asyncio.get_running_loop().remove_reader(self._lsock.fileno())
            self._lsock.close()

    async def aclose(self, grace: float | None = None) -> None:
        await super().aclose(grace)
        self._pool.close()

    def _on_accept(self) -> None:
        assert self._lsock is not None
        loop = asyncio.get_running_loop()
        for _ in range(64):
            try:
                conn, addr = self._lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # EMFILE and friends: the next readiness event retries
            conn.setblocking(False)
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            host, port = str(addr[0]), int(addr[1])
            label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            refusal = "shutting down" if self._closed else self.gate.refusal(host)
            if refusal is not None:
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
                conn.close()
                self._emit(ConnectionEnded("tcp", label, self._target_label, 0, 0, 0.0,
                                           "rejected", refusal))
                continue
            pair = SplicePair(loop, self._pool, conn, client=label, target=self._target_label,
                              on_done=self._relay_done)  # type: ignore[arg-type]
            self._relays.add(pair)  # type: ignore[arg-type]
            self._connecting[pair] = loop.create_task(  # type: ignore[index]
                self._connect_splice(pair))

    async def _connect_splice(self, pair: SplicePair) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.target.host, self.target.port
        sock: socket.socket | None = None
        try:
            with connect_errors(host, port, self.connect_timeout):
                async with asyncio.timeout(self.connect_timeout):
                    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                    family, _, _, _, sockaddr = infos[0]
                    sock = socket.socket(family, socket.SOCK_STREAM)
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    await loop.sock_connect(sock, sockaddr)
        except ConnectTimeout as exc:
            self.failed += 1
            pair.fail("timeout", str(exc))
        except NetError as exc:
            self.failed += 1
            pair.fail("refused", str(exc))
        else:
            pair.start(sock)
            sock = None
        finally:
            self._connecting.pop(pair, None)  # type: ignore[call-overload]
            if sock is not None:
                sock.close()
