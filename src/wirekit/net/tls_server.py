"""Serving TLS: the server's context (given or issued on the fly) and the TLS listener.

Theory of operation
-------------------
asyncio's ``create_server(ssl=...)`` hides failed handshakes: the service never hears of
them, and nothing says *why* a client was turned away.  So a TLS listener accepts plain
sockets itself and hands each to ``loop.connect_accepted_socket(ssl=...)`` in a task of its
own, which returns the TLS transport or raises the handshake's error::

    readable listening socket -> accept (a batch)
        refused (--allow/--deny/--max-conns/closing) -> close, "refused" event
            (ServerState.admit_peer: the same decision as every other serve() listener)
        admitted: a _Handshaking stands in the live set (shutdown and the idle sweeper
        can abort it) and a task runs connect_accepted_socket(ssl=ctx, timeout)
            ok     -> the service's protocol, marked pre-admitted, takes its place
            failed -> "tls failed" event whose detail is the reason (no client
                      certificate / expired / issued by a CA we do not trust / ...)

Admission comes before the handshake, so a refused peer costs no cryptography.  A failed
handshake's alert (e.g. "certificate required") is still sent: the transport drops it
when it gives up, so the listener keeps a duplicate of the socket's descriptor during the
handshake and writes the alert through it (see :mod:`wirekit.net.tls`).

With no certificate given, :func:`server_tls` issues one for the listen address from the
local CA (:class:`wirekit.tls.certs.LocalCA`; created when missing) in a private temporary
directory that is removed once the context has loaded it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wirekit.address import Address
from wirekit.net._served import IDLE, TLS_FAILED, ServerState
from wirekit.net.tls import (
    explain_server_failure,
    handshaking,
    prepare_context,
    wants_client_certificate,
)

__all__ = ["DEFAULT_HANDSHAKE_TIMEOUT", "ServerTLS", "TLSListener", "certificate_names",
           "server_tls"]

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
ACCEPT_BATCH = 64  # accepts per wake-up, so a flood cannot starve established connections


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """A server's TLS setup: the context, and the CA that issued an on-the-fly certificate."""

    context: ssl.SSLContext
    client_ca: str | os.PathLike[str] | None = None
    issued_by: Path | None = None  # the CA certificate to --ca, when wirekit issued the cert
    names: tuple[str, ...] = ()  # the names in that certificate
    created_ca: bool = False  # that CA did not exist and was made for this listener


def certificate_names(address: Address) -> list[str]:
    """The names an on-the-fly certificate for ``address`` carries."""
    host = address.host
    loopback = ["localhost", "127.0.0.1", "::1"]
    if host in ("", "0.0.0.0", "::"):
        return [socket.gethostname(), *loopback]
    if address.is_loopback:
        return [host, *[n for n in loopback if n != host]]
    return [host]


def server_tls(
    address: Address,
    *,
    context: ssl.SSLContext | None = None,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    client_ca: str | os.PathLike[str] | None = None,
    require_client_cert: bool = False,
    alpn: Iterable[str] = (),
    min_version: str | None = None,
    max_version: str | None = None,
    keylog: str | os.PathLike[str] | None = None,
    ca_dir: str | os.PathLike[str] | None = None,
) -> ServerTLS:
    """The context for a TLS listener on ``address`` (see the module doc)."""
    from wirekit.errors import UsageError
    from wirekit.tls.context import server_context

    if context is not None:
        if cert is not None or key is not None or client_ca is not None:
            raise UsageError("give serve() either ssl=CONTEXT or cert=/key=/client_ca=, "
                             "not both")
        return ServerTLS(context)
    if key is not None and cert is None:
        raise UsageError("--key needs --cert")
    options = {"client_ca": client_ca, "require_client_cert": require_client_cert,
               "alpn": alpn, "min_version": min_version, "max_version": max_version,
               "keylog": keylog}
    if cert is not None:
        ctx = server_context(cert=cert, key=key, **options)  # type: ignore[arg-type]
        prepare_context(ctx, record_peer_certificate=wants_client_certificate(ctx))
        return ServerTLS(ctx, client_ca)
    from wirekit.tls.certs import LocalCA, default_ca_dir

    directory = Path(ca_dir) if ca_dir is not None else default_ca_dir()
    created = False
    try:
        ca = LocalCA.open(directory)
    except UsageError:  # no CA yet: make one, as `wirekit cert init` would
        ca = LocalCA.init(directory)
        created = True
    names = certificate_names(address)
    with tempfile.TemporaryDirectory(prefix="wirekit-serve-") as tmp:
        issued = ca.issue(names, Path(tmp) / "serve")
        ctx = server_context(cert=issued.cert_path, key=issued.key_path,
                             **options)  # type: ignore[arg-type]
    prepare_context(ctx, record_peer_certificate=wants_client_certificate(ctx))
    return ServerTLS(ctx, client_ca, ca.cert_path.resolve(), tuple(names), created)


class _Handshaking:
    """Stands in the live set for a connection whose handshake is under way."""

    seen = 0
    quiet_since = 0.0

    def __init__(self, peer: Any) -> None:
        self.peer = peer
        self.started = 0.0  # set on admission (ServerState.admit_peer)
        self.task: asyncio.Task[None] | None = None
        self.ended: str | None = None

    def activity(self) -> int:
        return 0

    def draining(self) -> None:
        """A handshake under way may finish within the grace period."""

    def abort(self, why: str) -> None:
        if self.ended is None:
            self.ended = why
        if self.task is not None:
            self.task.cancel()

    def idle_expired(self) -> None:
        self.abort(IDLE)


class TLSListener:
    """Accepts, admits, handshakes; quacks like ``asyncio.AbstractServer`` for Server."""

    def __init__(self, sock: socket.socket, tls: ServerTLS, state: ServerState,
                 factory: Callable[[], asyncio.BaseProtocol],
                 handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT) -> None:
        self._sock = sock
        self._tls = tls
        self._state = state
        self._factory = factory
        self._timeout = handshake_timeout
        self._loop = state.loop
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        state = self._state
        for _ in range(ACCEPT_BATCH):
            try:
                conn, peer = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE, ECONNABORTED...: try again on the next wake-up
                return
            pending = _Handshaking(peer)
            started = state.admit_peer(pending, peer, conn)
            if started is None:  # refused: conn is closed and reported
                continue
            pending.started = started
            conn.setblocking(False)  # (both loops' transports set TCP_NODELAY themselves)
            task = self._loop.create_task(self._handshake(conn, pending))
            pending.task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handshake(self, conn: socket.socket, pending: _Handshaking) -> None:
        def make() -> asyncio.BaseProtocol:
            protocol = self._factory()
            protocol.wk_preadmitted = pending  # type: ignore[attr-defined]
            return protocol

        try:
            with handshaking(conn, server_side=True):  # the alert, and --record, on failure
                await self._loop.connect_accepted_socket(
                    make, conn, ssl=self._tls.context, ssl_handshake_timeout=self._timeout)
        except asyncio.CancelledError:
            conn.close()
            self._failed(pending, pending.ended or "shutdown", "")
        except Exception as exc:  # every handshake failure is one event, never a crash
            conn.close()
            self._failed(pending, TLS_FAILED, explain_server_failure(
                exc, self._tls.context, self._tls.client_ca))

    def _failed(self, pending: _Handshaking, ended: str, detail: str) -> None:
        state = self._state
        if pending in state.live:
            state.live.discard(pending)
            state.gate.leave()
            state.finished(pending.peer, 0, 0, pending.started, ended, detail)

    # -- the AbstractServer bits Server uses ----------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    async def wait_closed(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._timeout)
