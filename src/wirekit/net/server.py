"""``wirekit.serve``: listen on an address and serve a built-in service or your handler.

    async def handler(conn: wirekit.Connection) -> None:
        await conn.send(await conn.recvline())

    async with await wirekit.serve(handler, ":0") as server:
        print(server.address)          # tcp://127.0.0.1:41234 (the kernel's port)
        ...

Theory of operation
-------------------
TCP: one listening socket, one asyncio loop.  Built-in services are asyncio Protocols
(``services.py``); a handler gets a :class:`~wirekit.net.stream.Connection` in its own
task.  Admission (``--allow/--deny``, ``--max-conns``) happens as each connection is
made; refused ones are closed at once.  :meth:`Server.aclose` stops accepting at once,
waits up to ``limits.grace`` seconds for open connections to finish, then closes them.

UDP: one socket; each datagram from an allowed peer is answered by the service's reply
function and reported as one ``datagram`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import resource
import socket
import ssl as _ssl
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from wirekit.address import Address, parse_address
from wirekit.errors import UsageError
from wirekit.net._errors import bind_errors
from wirekit.net._served import (
    DATAGRAM,
    ERROR,
    PEER_CLOSED,
    RESET,
    SERVER_CLOSED,
    SHUTDOWN,
    ConnectionEvent,
    EventCallback,
    ServerState,
)
from wirekit.net.gate import Gate, Limits
from wirekit.net.services import Service, get_service
from wirekit.net.stream import Connection
from wirekit.net.tls_server import DEFAULT_HANDSHAKE_TIMEOUT, ServerTLS, TLSListener, server_tls

if TYPE_CHECKING:
    from wirekit.capture.recorder import Recorder

__all__ = ["DEFAULT_ADDRESS", "ConnectionEvent", "Server", "raise_nofile_limit", "serve"]

DEFAULT_ADDRESS = "tcp://127.0.0.1:12345"
DEFAULT_PORT = 12345
BACKLOG = 4096  # the kernel caps this at net.core.somaxconn

Handler = Callable[[Connection], Awaitable[None]]


def raise_nofile_limit() -> int:
    """Raise this process's soft open-files limit to its hard limit; return the new soft one.

    A server with thousands of clients needs a descriptor per client; the soft default
    (often 1024) is an accident of history, the hard limit is what the admin allows.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
    return soft


class Server:
    """A running listener.  ``address`` is the real bound address (port 0 resolved)."""

    def __init__(self, state: ServerState, address: Address, *,
                 server: asyncio.AbstractServer | None = None,
                 transport: asyncio.DatagramTransport | None = None,
                 tls: ServerTLS | None = None) -> None:
        self._state = state
        self.address = address
        self.tls = tls  # for tls://: the context, and the CA of an on-the-fly certificate
        self._server = server
        self._transport = transport
        self._closed = asyncio.Event()
        self._closing: asyncio.Task[None] | None = None

    # -- what it has done ------------------------------------------------------------------
    @property
    def service(self) -> str:
        return self._state.service

    @property
    def limits(self) -> Limits:
        return self._state.gate.limits

    @property
    def active(self) -> int:
        """Connections open right now."""
        return self._state.gate.active

    @property
    def accepted(self) -> int:
        return self._state.gate.accepted

    @property
    def refused(self) -> int:
        return self._state.gate.refused

    @property
    def completed(self) -> int:
        """Connections (or datagrams, for UDP) finished so far."""
        return self._state.completed

    @property
    def bytes_in(self) -> int:
        return self._state.bytes_in

    @property
    def bytes_out(self) -> int:
        return self._state.bytes_out

    @property
    def is_serving(self) -> bool:
        return not self._state.closing

    # -- stopping ----------------------------------------------------------------------------
    async def aclose(self, grace: float | None = None) -> None:
        """Stop accepting now; let open connections finish for ``grace`` seconds (default
        ``limits.grace``), then close the rest.  Safe to call more than once."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._shutdown(grace))
        await asyncio.shield(self._closing)

    def close(self) -> None:
        """Stop accepting new connections now (open ones continue)."""
        self._state.closing = True
        if self._server is not None:
            self._server.close()
        if self._transport is not None:
            self._transport.close()

    async def _shutdown(self, grace: float | None) -> None:
        state = self._state
        self.close()
        for conn in list(state.live):
            conn.draining()
        if grace is None:
            grace = state.gate.limits.grace
        if state.live and not await state.gate.drained(max(grace, 0.0)):
            for conn in list(state.live):
                conn.abort(SHUTDOWN)
            # Handler tasks get cancelled by abort(); wait for them to report.
            await state.gate.drained(2.0)
        state.stop_sweeping()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self._closed.set()

    async def wait_closed(self) -> None:
        """Wait until :meth:`aclose` has finished."""
        await self._closed.wait()

    async def serve_forever(self) -> None:
        """Serve until cancelled (then close with the grace period) or closed elsewhere."""
        try:
            await self._closed.wait()
        finally:
            await self.aclose()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Server {self.service} on {self.address}, {self.active} open>"


async def serve(
    service_or_handler: str | Handler,
    address: str | Address = DEFAULT_ADDRESS,
    *,
    limits: Limits | None = None,
    on_event: EventCallback | None = None,
    backlog: int = BACKLOG,
    ssl: _ssl.SSLContext | None = None,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    client_ca: str | os.PathLike[str] | None = None,
    require_client_cert: bool = False,
    alpn: Iterable[str] = (),
    min_version: str | None = None,
    max_version: str | None = None,
    keylog: str | os.PathLike[str] | None = None,
    ca_dir: str | os.PathLike[str] | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    record: Recorder | None = None,
) -> Server:
    """Listen on ``address`` and serve a built-in service (by name) or ``handler(conn)``.

    ``on_event`` is called with a :class:`ConnectionEvent` for each finished connection
    (and each refused one, each failed TLS handshake, and each UDP datagram).  Raises
    :class:`~wirekit.errors.BindError` when the address cannot be bound and
    :class:`~wirekit.errors.UsageError` for an unknown service.

    ``tls://`` serves TLS with wirekit's defaults: ``cert``/``key`` (PEM), or your own
    ``ssl`` context, or neither: then a certificate for the listen address is issued from
    the local CA in ``ca_dir`` (default: ``wirekit cert``'s; created when missing), and
    ``server.tls.issued_by`` is the CA certificate clients should trust.  ``client_ca``
    asks clients for a certificate issued by those roots (``require_client_cert``: refuse
    clients without one); each refused client is a ``tls failed`` event with the reason.
    ``record`` (a :class:`wirekit.capture.recorder.Recorder`, which several listeners may
    share) writes every TCP connection to a pcapng file (a TLS one as its ciphertext, keys
    in a Decryption Secrets Block, and its plaintext on a second interface), and every UDP
    datagram each way.
    """
    limits = limits or Limits()
    if isinstance(address, str):
        address = parse_address(address, default_port=DEFAULT_PORT,
                                schemes=("tcp", "udp", "tls"))
    if address.scheme not in ("tcp", "udp", "tls"):
        raise UsageError(f"cannot serve on {address}: use tcp://, udp:// or tls://")
    tls_given = (ssl is not None or cert is not None or key is not None or client_ca is not None
                 or require_client_cert or bool(tuple(alpn)) or min_version is not None
                 or max_version is not None or keylog is not None or ca_dir is not None)
    if tls_given and address.scheme != "tls":
        raise UsageError(f"TLS options need a tls:// address, not {address}")
    service: Service | None = None
    if isinstance(service_or_handler, str):
        service = get_service(service_or_handler)
        name = service.name
    elif callable(service_or_handler):
        name = getattr(service_or_handler, "__name__", "handler")
    else:
        raise UsageError("serve() takes a service name or an async handler function")

    tls = None
    if address.scheme == "tls":
        tls = server_tls(address, context=ssl, cert=cert, key=key, client_ca=client_ca,
                         require_client_cert=require_client_cert, alpn=alpn,
                         min_version=min_version, max_version=max_version, keylog=keylog,
                         ca_dir=ca_dir)
    state = ServerState(name, Gate(limits), on_event, address.scheme)
    sock = await _bind(address)
    try:
        bound = _bound_address(address.scheme, sock)
        loop = asyncio.get_running_loop()
        if address.scheme == "udp":
            if service is None:
                raise UsageError("UDP serving takes a built-in service name, not a handler")
            if service.udp is None:
                raise UsageError(f"the {service.name} service has no UDP variant "
                                 f"(UDP: {', '.join(_udp_services())})")
            protocol: asyncio.DatagramProtocol = _DatagramService(state, service.udp())
            if record is not None:  # each datagram each way, one conversation per peer
                from wirekit.capture.protocol_tap import recording_datagrams

                protocol = recording_datagrams(protocol, record)
            transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
            return Server(state, bound, transport=transport)
        if service is not None:
            factory: Callable[[], asyncio.BaseProtocol] = service.tcp_factory(state)
        else:
            handler = service_or_handler
            if not (inspect.iscoroutinefunction(handler)
                    or inspect.iscoroutinefunction(type(handler).__call__)):
                raise UsageError("a serve() handler must be an async function of a connection")
            factory = lambda: _HandlerProtocol(state, handler)  # type: ignore[arg-type]  # noqa: E731
        if record is not None and tls is not None:  # the ciphertext, keys in a DSB
            from wirekit.capture.protocol_tap import recording_tls_factory

            factory = recording_tls_factory(factory, record, tls.context)
        elif record is not None:
            from wirekit.capture.protocol_tap import recording_factory

            factory = recording_factory(factory, record)
        if tls is not None:
            listener = TLSListener(sock, tls, state, factory, handshake_timeout)
            return Server(state, bound, server=listener, tls=tls)  # type: ignore[arg-type]
        server = await loop.create_server(factory, sock=sock, backlog=backlog)
        return Server(state, bound, server=server)
    except BaseException:
        sock.close()
        raise


def _udp_services() -> list[str]:
    from wirekit.net.services import SERVICES

    return [name for name, s in SERVICES.items() if s.udp is not None]


async def _bind(address: Address) -> socket.socket:
    kind = socket.SOCK_DGRAM if address.scheme == "udp" else socket.SOCK_STREAM
    loop = asyncio.get_running_loop()
    with bind_errors(address.host, address.port):
        infos = await loop.getaddrinfo(address.host, address.port, type=kind,
                                       flags=socket.AI_PASSIVE)
        family, socktype, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, socktype, proto)
        try:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            if kind == socket.SOCK_STREAM:
                sock.listen(BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
    return sock


def _bound_address(scheme: str, sock: socket.socket) -> Address:
    name = sock.getsockname()
    return Address(scheme, str(name[0]), int(name[1]))


class _HandlerProtocol(asyncio.StreamReaderProtocol):
    """Runs a user's ``async def handler(conn)`` per admitted connection, in its own task."""

    def __init__(self, state: ServerState, handler: Handler) -> None:
        self._wk_state = state
        self._wk_handler = handler
        self._wk_admitted = False
        self._wk_task: asyncio.Task[None] | None = None
        self._wk_conn: Connection | None = None
        self._wk_peer: Any = None
        self.seen = 0
        self.quiet_since = 0.0
        self._wk_ended: str | None = None
        self._wk_eof = False
        self._wk_in = 0
        super().__init__(asyncio.StreamReader(limit=1 << 20, loop=state.loop), self._start,
                         loop=state.loop)

    wk_preadmitted: Any = None  # set by a TLS listener (see tls_server.py)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        admitted = self._wk_state.admit_or_refuse(self, transport)
        if admitted is None:
            return
        self._wk_peer, self._wk_started = admitted
        self._wk_admitted = True
        super().connection_made(transport)

    def _start(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state = self._wk_state
        conn = self._wk_conn = Connection.from_streams(reader, writer, state.scheme)
        self._wk_task = state.loop.create_task(self._run(conn))

    async def _run(self, conn: Connection) -> None:
        state = self._wk_state
        detail = ""
        try:
            await self._wk_handler(conn)
        except asyncio.CancelledError:
            pass  # aborted: idle timeout or shutdown, already recorded in _wk_ended
        except Exception as exc:  # a handler's bug must not take the server down
            if self._wk_ended is None:
                if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                    self._wk_ended = RESET
                else:
                    self._wk_ended, detail = ERROR, f"{type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):
                await conn.aclose()
            ended = self._wk_ended or (PEER_CLOSED if self._wk_eof else SERVER_CLOSED)
            state.live.discard(self)
            state.gate.leave()
            state.finished(self._wk_peer, self._wk_in, conn.bytes_sent, self._wk_started,
                           ended, detail)

    def data_received(self, data: bytes) -> None:
        if not self._wk_admitted:
            return
        self._wk_in += len(data)
        super().data_received(data)

    def eof_received(self) -> bool:
        self._wk_eof = True
        return bool(super().eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._wk_admitted and self._wk_task is None:
            # Lost before the handler started; nothing will report it otherwise.
            self._wk_admitted = False
            state = self._wk_state
            state.live.discard(self)
            state.gate.leave()
            state.finished(self._wk_peer, self._wk_in, 0, self._wk_started, RESET)

    def draining(self) -> None:
        """Handlers run to completion (within the grace period); nothing to do here."""

    def abort(self, why: str) -> None:
        if self._wk_ended is None:
            self._wk_ended = why
        if self._transport is not None:  # type: ignore[attr-defined]
            self._transport.abort()  # type: ignore[attr-defined]
        if self._wk_task is not None:
            self._wk_task.cancel()

    def activity(self) -> int:
        return self._wk_in + (self._wk_conn.bytes_sent if self._wk_conn is not None else 0)

    def idle_expired(self) -> None:
        self.abort("idle timeout")


class _DatagramService(asyncio.DatagramProtocol):
    def __init__(self, state: ServerState, answer: Callable[[bytes], bytes | None]) -> None:
        self._state = state
        self._answer = answer
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        state = self._state
        reason = state.gate.limits.acl.refusal(addr[0]) if state.gate.limits.acl else None
        if reason is not None:
            state.gate.refused += 1
            state.refused(addr, reason)
            return
        state.gate.accepted += 1
        started = state.loop.time()
        reply = self._answer(data)
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)
        state.finished(addr, len(data), len(reply or b""), started, DATAGRAM,
                       "" if reply is not None else "no reply")

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors about earlier replies (port unreachable): nothing to do for a server
