"""SSH tunnels that stay up: ``-L``, ``-R`` and ``-D`` forwards over one supervised session.

Theory of operation::

    start() --connect+auth--> UP --connection lost--> DOWN --backoff, reconnect--> UP ...
       |                                 |                  |
       '- auth / host key error: raise   '- no reconnect:   '- auth / host key error:
                                            fail(SSHError)     fail (never retried)

Local listeners (``-L``, ``-D``) are bound once and outlive reconnects, so forwards come back
on the same ports; a connection accepted while DOWN waits (bounded) for the session and
wakes the backoff so it retries now.  Remote listeners (``-R``) live on the server and are
requested again after each reconnect, asking for the port the server gave last time.
Every forwarded connection is a :mod:`wirekit.ssh.pipe` pair.  Events (up, down, forward,
per-connection open/close/refused) go to ``on_event``; :meth:`Tunnel.wait` returns when
the tunnel failed for good (and raises why).  :meth:`Tunnel.aclose` is bounded: it aborts
what does not close in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncssh

from wirekit.errors import (
    AuthError,
    ForwardRefused,
    HostKeyError,
    SSHError,
    UsageError,
    WirekitError,
)
from wirekit.net._errors import bind_errors, connect_errors
from wirekit.ssh.connect import Session, SSHOptions, open_session
from wirekit.ssh.pipe import ChannelEnd, SocketEnd
from wirekit.ssh.socks import SocksError, SocksHandshake
from wirekit.ssh.spec import Forward, SSHTarget, parse_forward, parse_target

if TYPE_CHECKING:
    from wirekit.capture.recorder import Recorder

__all__ = ["Tunnel", "TunnelEvent", "tunnel"]

BACKOFF_START = 0.5
BACKOFF_CAP = 30.0
CLOSE_TIMEOUT = 1.0
KICK_MIN_INTERVAL = 0.25
HANDSHAKE_TIMEOUT = 10.0
CHANNEL_WINDOW = 2 * 1024 * 1024
CHANNEL_PACKET = 32768
LISTEN_BACKLOG = 1024


@dataclass(frozen=True, slots=True)
class TunnelEvent:
    """Something the tunnel wants to report.  ``kind`` is one of: up, down, retry, forward,
    open, close, refused, hostkey, error."""

    kind: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.kind, "message": self.message, **self.fields}


@dataclass(slots=True)
class TunnelStats:
    connections: int = 0
    active: int = 0
    refused: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    reconnects: int = 0


def _forwards(kind: str, items: Iterable[str | Forward]) -> list[Forward]:
    out = []
    for item in items:
        fwd = item if isinstance(item, Forward) else parse_forward(kind, item)
        if fwd.kind != kind:
            raise UsageError(f"{fwd.spec!r} is a -{fwd.kind} forward, given as -{kind}")
        out.append(fwd)
    return out


class Tunnel:
    """One SSH session carrying any number of forwards; see the module docstring."""

    def __init__(
        self,
        target: str | SSHTarget,
        *,
        local: Iterable[str | Forward] = (),
        remote: Iterable[str | Forward] = (),
        dynamic: Iterable[str | Forward] = (),
        options: SSHOptions | None = None,
        reconnect: bool = True,
        on_event: Callable[[TunnelEvent], None] | None = None,
        record: Recorder | None = None,
    ) -> None:
        self.target = parse_target(target) if isinstance(target, str) else target
        self._record = record  # every TCP connection the tunnel carries, to pcapng
        self.forwards = [*_forwards("L", local), *_forwards("R", remote),
                         *_forwards("D", dynamic)]
        self.options = options or SSHOptions()
        self.reconnect = reconnect
        self.stats = TunnelStats()
        self.url = ""
        self._on_event = on_event
        self._session: Session | None = None
        self._servers: dict[int, asyncio.AbstractServer] = {}
        self._ports: dict[int, int] = {}       # forward index -> bound / allocated port
        self._remote: dict[int, Any] = {}      # forward index -> SSHListener
        self._pipes: set[SocketEnd] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._up = asyncio.Event()
        self._kick = asyncio.Event()
        self._failed = asyncio.Event()
        self._failure: BaseException | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False

    # -- public ---------------------------------------------------------------------------
    @property
    def local_ports(self) -> list[int]:
        """The bound port of each ``-L`` forward, in order."""
        return self._ports_of("L")

    @property
    def dynamic_ports(self) -> list[int]:
        return self._ports_of("D")

    @property
    def remote_ports(self) -> list[int]:
        """The port the server listens on for each ``-R`` forward (as allocated)."""
        return self._ports_of("R")

    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    async def start(self) -> None:
        """Connect, bind and request every forward; raises a wirekit error on failure."""
        try:
            self._session = await open_session(self.target, self.options, record=self._record)
            self.url = self._session.url
            self._report_keys(self._session)
            for index, fwd in enumerate(self.forwards):
                if fwd.kind in ("L", "D"):
                    await self._bind(index, fwd)
            await self._open_remotes(self._session, first=True)
        except BaseException:
            await self.aclose()
            raise
        self._up.set()
        self._emit("up", f"connected to {self.url}", url=self.url)
        for index, fwd in enumerate(self.forwards):
            self._emit_forward(index, fwd)
        self._supervisor = asyncio.create_task(self._supervise())

    async def wait(self) -> None:
        """Return when the tunnel has failed for good, raising the reason."""
        await self._failed.wait()
        if self._failure is not None:
            raise self._failure

    async def aclose(self) -> None:
        """Close listeners, channels and the session; bounded by ~CLOSE_TIMEOUT."""
        self._closing = True
        self._up.clear()
        if self._supervisor is not None and self._supervisor is not asyncio.current_task():
            self._supervisor.cancel()
        for server in self._servers.values():
            server.close()
        for end in list(self._pipes):
            end.abort()
        for task in list(self._tasks):
            task.cancel()
        session, self._session = self._session, None
        if session is not None:
            session.close()
        waits: list[Any] = [*self._tasks]
        if self._supervisor is not None and self._supervisor is not asyncio.current_task():
            waits.append(self._supervisor)
        closer = None
        if session is not None:
            closer = asyncio.ensure_future(session.wait_closed(CLOSE_TIMEOUT))
            waits.append(closer)
        if waits:  # one deadline for everything: Ctrl-C must end the process within 2 s
            await asyncio.wait(waits, timeout=CLOSE_TIMEOUT)
        if closer is not None and not closer.done():
            closer.cancel()
        if session is not None:
            session.abort()
        self._failed.set()

    async def __aenter__(self) -> Tunnel:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- events ---------------------------------------------------------------------------
    def _emit(self, kind: str, message: str, **fields: Any) -> None:
        if self._on_event is not None:
            self._on_event(TunnelEvent(kind, message, fields))

    def _report_keys(self, session: Session) -> None:
        for text in session.accepted_keys:
            where, fp = text.rsplit(" ", 1)
            self._emit("hostkey", f"trusted new host key for {where}: {fp} (recorded in "
                                  f"{self.options.known_hosts_path})", fingerprint=fp)

    def _emit_forward(self, index: int, fwd: Forward) -> None:
        port = self._ports[index]
        where = f"{_bracket(fwd.bind_host)}:{port}"
        if fwd.kind == "R":
            message = f"forwarding remote {where} -> {fwd.target} via {self.url}"
        else:
            message = f"forwarding {where} -> {fwd.target} via {self.url}"
        self._emit("forward", message, forward=fwd.kind, bind=fwd.bind_host, port=port,
                   target=fwd.target, via=self.url)

    def _ports_of(self, kind: str) -> list[int]:
        return [self._ports.get(i, 0) for i, f in enumerate(self.forwards) if f.kind == kind]

    # -- listeners ------------------------------------------------------------------------
    async def _bind(self, index: int, fwd: Forward) -> None:
        loop = asyncio.get_running_loop()

        def factory() -> SocketEnd:
            return SocketEnd(self._on_closed, lambda end: self._accepted(end, fwd))

        make: Callable[[], Any] = factory
        if self._record is not None:
            from wirekit.capture.protocol_tap import recording_factory

            make = recording_factory(factory, self._record)
        with bind_errors(fwd.bind_host, fwd.bind_port):
            server = await loop.create_server(make, fwd.bind_host, fwd.bind_port,
                                              reuse_address=True, backlog=LISTEN_BACKLOG)
        self._servers[index] = server
        self._ports[index] = server.sockets[0].getsockname()[1]

    def _accepted(self, end: SocketEnd, fwd: Forward) -> None:
        if self._closing:
            end.abort()
            return
        self._pipes.add(end)
        self.stats.connections += 1
        self.stats.active += 1
        task = asyncio.create_task(self._serve_local(end, fwd))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_closed(self, end: SocketEnd, exc: BaseException | None) -> None:
        self._pipes.discard(end)
        self.stats.active = max(0, self.stats.active - 1)
        self.stats.bytes_sent += end.stats.sent
        self.stats.bytes_received += end.stats.received
        label = end.label
        if label is not None:
            elapsed = time.monotonic() - end.stats.started
            self._emit("close", f"closed {label} (sent {end.stats.sent}, received "
                                f"{end.stats.received} bytes, {elapsed:.1f}s)",
                       sent=end.stats.sent, received=end.stats.received,
                       seconds=round(elapsed, 3))

    async def _serve_local(self, end: SocketEnd, fwd: Forward) -> None:
        peer = f"{_bracket(end.peername[0])}:{end.peername[1]}"
        socks = None
        if fwd.kind == "D":
            socks = SocksHandshake()
            try:
                host, port = await asyncio.wait_for(self._socks_request(end, socks),
                                                    HANDSHAKE_TIMEOUT)
            except (SocksError, TimeoutError) as exc:
                self.stats.refused += 1
                self._emit("refused", f"{peer}: bad SOCKS request: {exc or 'timed out'}",
                           peer=peer)
                end.close()
                return
            if socks.rest:
                end._early.insert(0, socks.rest)
        else:
            host, port = fwd.host, fwd.host_port
        target = f"{_bracket(host)}:{port}"
        session = await self._wait_up(self.options.connect_timeout)
        if session is None or end.transport is None:
            self.stats.refused += 1
            self._emit("refused", f"{peer} -> {target}: the SSH session is down", peer=peer,
                       target=target)
            if socks is not None and end.transport is not None:
                end.transport.write(socks.reply(False))
            end.close()
            return
        if socks is not None:
            end.prelude = socks.reply(True)
        try:
            async with asyncio.timeout(self.options.connect_timeout):  # no extra task
                await session.conn.create_connection(
                    lambda: ChannelEnd(end), host, port, end.peername[0], end.peername[1],
                    window=CHANNEL_WINDOW, max_pktsize=CHANNEL_PACKET)
        except (asyncssh.ChannelOpenError, asyncssh.Error, OSError, TimeoutError) as exc:
            reason = _open_reason(exc)
            self.stats.refused += 1
            self._emit("refused", f"{peer} -> {target}: {reason}", peer=peer, target=target,
                       reason=reason)
            if socks is not None and end.transport is not None:
                end.transport.write(socks.reply(False, 5 if "refused" in reason else 1))
            end.close()
            return
        if self._on_event is not None:  # per-connection lines cost only when someone listens
            end.label = f"{peer} -> {target}"
            self._emit("open", f"open {peer} -> {target}", peer=peer, target=target)

    async def _socks_request(self, end: SocketEnd, socks: SocksHandshake) -> tuple[str, int]:
        done: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()

        def on_data(data: bytes) -> None:
            if done.done():
                end._early.append(data)
                end.pause_reading()
                return
            try:
                reply = socks.feed(data)
            except SocksError as exc:
                if exc.reply and end.transport is not None:
                    end.transport.write(exc.reply)
                done.set_exception(exc)
                return
            if reply and end.transport is not None:
                end.transport.write(reply)
            if socks.request is not None:
                end.pause_reading()
                done.set_result(socks.request)

        end.on_data = on_data
        early, end._early = b"".join(end._early), []
        if early:
            on_data(early)
        end.resume_reading()
        return await done

    async def _wait_up(self, timeout: float) -> Session | None:
        if not self._up.is_set():
            self._kick.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._up.wait(), timeout)
        return self._session if self._up.is_set() else None

    # -- remote forwards ------------------------------------------------------------------
    async def _open_remotes(self, session: Session, *, first: bool) -> None:
        for index, fwd in enumerate(self.forwards):
            if fwd.kind != "R":
                continue
            port = self._ports.get(index, fwd.bind_port)
            try:
                listener = await self._listen_remote(session, fwd, port)
            except ForwardRefused as exc:
                if first or port == fwd.bind_port:
                    if first:
                        raise
                    self._emit("error", str(exc))
                    continue
                listener = None
            if listener is None:  # the old allocated port is gone: ask for a new one
                try:
                    listener = await self._listen_remote(session, fwd, fwd.bind_port)
                except ForwardRefused as exc:
                    self._emit("error", str(exc))
                    continue
            self._remote[index] = listener
            self._ports[index] = listener.get_port()

    async def _listen_remote(self, session: Session, fwd: Forward, port: int) -> Any:
        def factory(orig_host: str, orig_port: int) -> Any:
            return self._remote_connection(fwd, orig_host, orig_port)

        try:
            return await asyncio.wait_for(
                session.conn.create_server(factory, fwd.bind_host, port,
                                           window=CHANNEL_WINDOW, max_pktsize=CHANNEL_PACKET),
                self.options.connect_timeout)
        except (asyncssh.ChannelListenError, asyncssh.Error, TimeoutError) as exc:
            raise ForwardRefused(
                f"the server refused remote forward {_bracket(fwd.bind_host)}:{port} -> "
                f"{fwd.target}: {_listen_reason(exc)}") from None

    async def _remote_connection(self, fwd: Forward, orig_host: str, orig_port: int) -> Any:
        loop = asyncio.get_running_loop()
        peer = f"{_bracket(orig_host)}:{orig_port} (remote)"
        target = fwd.target
        end = SocketEnd(self._on_closed)
        make: Callable[[], Any] = lambda: end  # noqa: E731
        if self._record is not None:
            from wirekit.capture.protocol_tap import recording_client_factory

            make = recording_client_factory(make, self._record)
        try:
            with connect_errors(fwd.host, fwd.host_port, self.options.connect_timeout):
                async with asyncio.timeout(self.options.connect_timeout):
                    await loop.create_connection(make, fwd.host, fwd.host_port)
        except WirekitError as exc:
            self.stats.refused += 1
            self._emit("refused", f"{peer} -> {target}: {exc}", peer=peer, target=target,
                       reason=str(exc))
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(exc)) from None
        if self._closing:
            end.abort()
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "tunnel closing")
        end.pause_reading()
        self._pipes.add(end)
        self.stats.connections += 1
        self.stats.active += 1
        if self._on_event is not None:  # per-connection lines cost only when someone listens
            end.label = f"{peer} -> {target}"
            self._emit("open", f"open {peer} -> {target}", peer=peer, target=target)
        return ChannelEnd(end)

    # -- supervision ----------------------------------------------------------------------
    async def _supervise(self) -> None:
        try:
            while not self._closing:
                session = self._session
                assert session is not None
                await session.conn.wait_closed()
                if self._closing:
                    return
                self._up.clear()
                reason = session.lost_reason() or "connection closed"
                self._remote.clear()
                session.close()
                if not self.reconnect:
                    self._fail(SSHError(f"connection to {self.url} lost: {reason}"))
                    return
                self._emit("down", f"connection to {self.url} lost: {reason}; reconnecting",
                           reason=reason)
                new = await self._reconnect()
                if new is None:
                    return
                self._session = new
                self.stats.reconnects += 1
                self._report_keys(new)
                await self._open_remotes(new, first=False)
                self._up.set()
                self._emit("up", f"reconnected to {self.url}", url=self.url)
                for index, fwd in enumerate(self.forwards):
                    if fwd.kind == "R" and index in self._remote:
                        self._emit_forward(index, fwd)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug must not leave the tunnel silently dead
            self._fail(exc)

    async def _reconnect(self) -> Session | None:
        delay = BACKOFF_START
        attempt = 0
        while not self._closing:
            attempt += 1
            self._kick.clear()  # a connection arriving from now on asks for an early retry
            try:
                return await open_session(self.target, self.options, record=self._record)
            except (AuthError, HostKeyError) as exc:
                self._fail(exc)
                return None
            except WirekitError as exc:
                self._emit("retry", f"reconnect attempt {attempt} failed: {exc}; next in "
                                    f"{delay:g}s", attempt=attempt, reason=str(exc))
            started = asyncio.get_running_loop().time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), delay)
            # kicked early: still leave a little room so a stream of clients cannot spin us
            spent = asyncio.get_running_loop().time() - started
            if spent < min(delay, KICK_MIN_INTERVAL):
                await asyncio.sleep(min(delay, KICK_MIN_INTERVAL) - spent)
            delay = min(delay * 2, BACKOFF_CAP)
        return None

    def _fail(self, exc: BaseException) -> None:
        self._failure = exc
        self._failed.set()


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _open_reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.ChannelOpenError):
        reason = exc.reason or "open failed"
        if exc.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED:
            return (f"the server refused the forward: administratively prohibited ({reason}); "
                    f"is TCP forwarding disabled there (AllowTcpForwarding)?")
        if exc.code == asyncssh.OPEN_CONNECT_FAILED:
            return f"the server could not connect: {reason}"
        return f"the server refused the channel: {reason}"
    if isinstance(exc, TimeoutError):
        return "timed out opening the channel"
    return f"channel failed: {exc}"


def _listen_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer from the server"
    if isinstance(exc, asyncssh.ChannelListenError):
        # SSH's global request failure carries no reason: name the usual ones.
        return ("request denied: administratively prohibited (AllowTcpForwarding / "
                "PermitListen / GatewayPorts on the server) or the port is in use there")
    return str(exc) or type(exc).__name__


@contextlib.asynccontextmanager
async def tunnel(
    target: str | SSHTarget,
    *,
    local: Iterable[str | Forward] = (),
    remote: Iterable[str | Forward] = (),
    dynamic: Iterable[str | Forward] = (),
    options: SSHOptions | None = None,
    reconnect: bool = True,
    on_event: Callable[[TunnelEvent], None] | None = None,
    record: Recorder | None = None,
    **option_fields: Any,
) -> AsyncIterator[Tunnel]:
    """``async with wirekit.tunnel("user@host", local=["0:db:5432"]) as t: t.local_ports``.

    Keyword arguments not named here are :class:`SSHOptions` fields (``identity_files``,
    ``password``, ``known_hosts``, ``accept_new``, ``jump``, ``keepalive``...).
    ``record`` (a :class:`wirekit.capture.recorder.Recorder`) writes every TCP connection
    the tunnel carries to pcapng: the clients of the -L/-D listeners, wirekit's connections
    to the -R targets, and the SSH connection itself (each reconnect a new one).
    """
    if option_fields:
        if options is not None:
            raise UsageError("pass either options= or option keywords, not both")
        if "identity_files" in option_fields:
            option_fields["identity_files"] = tuple(option_fields["identity_files"])
        if "jump" in option_fields:
            option_fields["jump"] = tuple(
                parse_target(j) if isinstance(j, str) else j for j in option_fields["jump"])
        options = SSHOptions(**option_fields)
    t = Tunnel(target, local=local, remote=remote, dynamic=dynamic, options=options,
               reconnect=reconnect, on_event=on_event, record=record)
    await t.start()
    try:
        yield t
    finally:
        await t.aclose()
