"""TLS in ``wirekit forward``: terminate (``tls://LISTEN``), originate (``tls://TARGET``), both.

Theory of operation
-------------------
The bytes still move through :class:`~wirekit.net.relay.Relay` ends, one
``data_received`` -> ``write`` per chunk; only the transports differ.  A TLS side is one of
the event loop's TLS transports (uvloop's by default: about 65 KiB per idle connection,
where the stdlib's sslproto allocates 256 KiB).  The plaintext forwarder is not touched:
a rule with no tls:// side never reaches this module.

Terminate (stunnel server mode).  The listener accepts plain sockets itself, admits them
through the Gate (a refused peer costs no cryptography), then runs the handshake in a
task of its own with ``connect_accepted_socket(ssl=...)``::

    accept -> Gate refuses -> close; "rejected" event
           -> admitted -> handshake task (ssl_handshake_timeout)
                 ok     -> the relay's client end is made; connect to the target
                 failed -> "tls failed" event whose detail says why (no client
                           certificate, expired, unknown CA, not TLS at all...)

The alert a failed handshake queued (e.g. "certificate required") is written through a
duplicate of the socket's descriptor, as the TLS listener of ``serve`` does.

Originate (stunnel client mode).  The target is connected with ``create_connection(
ssl=...)`` and verified with wirekit's defaults (``--ca``, ``--sni``, ``--insecure``).
A target whose certificate is not trusted fails the connect: the client is reset at once
and the connection's event is ``tls failed`` with the verdict's reason ("certificate of
127.0.0.1:4433 not trusted: self_signed: ...").

Half-close.  asyncio's (and uvloop's) TLS transports cannot ``write_eof`` (send
close_notify and keep reading) and shut themselves down when the peer's close_notify
arrives, so a FIN cannot always become a close_notify and back.  The mapping:

* close_notify (or a FIN) from a TLS side -> everything before it is delivered, then a FIN
  to the other side (close_notify if that side is TLS too).  The TLS side is finished
  then, so the connection closes once that FIN is sent: what the other side still sends
  is discarded.
* a FIN from a plaintext *target* towards a TLS client (a server that marks the end of
  its response by closing, HTTP/1.0, FTP) -> what was relayed is flushed, then
  close_notify; the connection ends (what the TLS client still sends is discarded).
* a FIN from a plaintext *client* towards a TLS target (a request ended by a half-close,
  ``nc -N``, ``wirekit connect`` at the end of stdin, or simply a client that closed) ->
  held while the target's reply flows: close_notify goes out once nothing has moved for
  ``Relay.HOLD_LINGER`` (2 s), or earlier when the target closes (close_notify -> FIN).
  Sending close_notify at once would cut the reply off, as the TLS transport cannot read
  after sending it; holding forever would keep the target's connection of a client that
  has gone.  A reply that starts more than 2 s after the client's half-close is lost,
  and a TLS server that waits for the end of the request before replying sees the
  close_notify only after those 2 s.
* a reset on either side -> a reset (SO_LINGER 0) on the other, TLS or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from dataclasses import dataclass

from wirekit.address import Address
from wirekit.errors import ConnectTimeout, NetError, TLSError, UsageError
from wirekit.net._errors import bind_errors, connect_errors
from wirekit.net.forward import ConnectionEnded, ConnInfo, Forwarder, local_address
from wirekit.net.relay import Relay
from wirekit.net.tcp import connect_any
from wirekit.net.tls import (
    ClientTLS,
    client_tls,
    explain_client_failure,
    explain_server_failure,
    handshaking,
)
from wirekit.net.tls_server import DEFAULT_HANDSHAKE_TIMEOUT, ServerTLS, server_tls

__all__ = ["TLS_FAILED", "ListenTLS", "TLSForwarder", "TargetTLS"]

TLS_FAILED = "tls failed"
ACCEPT_BATCH = 64  # accepts per wake-up, so a flood cannot starve established connections


@dataclass(frozen=True, slots=True)
class ListenTLS:
    """How a ``tls://`` listener terminates TLS (certificate issued on the fly without cert).

    ``context``: a ready server ``ssl.SSLContext`` instead of the other settings.
    """

    cert: str | os.PathLike[str] | None = None
    key: str | os.PathLike[str] | None = None
    client_ca: str | os.PathLike[str] | None = None
    require_client_cert: bool = False
    alpn: tuple[str, ...] = ()
    min_version: str | None = None
    max_version: str | None = None
    keylog: str | os.PathLike[str] | None = None
    ca_dir: str | os.PathLike[str] | None = None
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    context: ssl.SSLContext | None = None

    def setup(self, address: Address) -> ServerTLS:
        if self.require_client_cert and self.client_ca is None and self.context is None:
            raise UsageError("--require-client-cert needs --client-ca FILE (the roots that "
                             "issue client certificates)")
        return server_tls(address, context=self.context, cert=self.cert, key=self.key,
                          client_ca=self.client_ca,
                          require_client_cert=self.require_client_cert, alpn=self.alpn,
                          min_version=self.min_version, max_version=self.max_version,
                          keylog=self.keylog, ca_dir=self.ca_dir)


@dataclass(frozen=True, slots=True)
class TargetTLS:
    """How the connection to a ``tls://`` target is made and verified."""

    ca: str | os.PathLike[str] | None = None
    insecure: bool = False
    cert: str | os.PathLike[str] | None = None
    key: str | os.PathLike[str] | None = None
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    min_version: str | None = None
    max_version: str | None = None
    keylog: str | os.PathLike[str] | None = None
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    # CRL files (PEM or DER): a target certificate a CRL from its issuer lists is refused
    # (revoked), judged as wirekit tls --crl judges it (see wirekit.net.tls)
    crl: tuple[str | os.PathLike[str], ...] = ()

    resume: bool = True

    def setup(self, address: Address) -> ClientTLS:
        tls = client_tls(address.host, ca=self.ca, insecure=self.insecure, cert=self.cert,
                         key=self.key, sni=self.sni, alpn=self.alpn,
                         min_version=self.min_version, max_version=self.max_version,
                         keylog=self.keylog, crl=self.crl or None)
        if self.resume:
            _resume_sessions(tls.context)
        return tls


def _resume_sessions(ctx: ssl.SSLContext) -> None:
    """Offer the last session the target gave us on each new connection (as stunnel's
    client mode does): a resumed handshake skips the certificate signature and chain
    checks on both sides.  The context serves one target, host and SNI, so a session is
    only ever offered to the server that issued it (and verified it first)."""
    base = ctx.sslobject_class

    class Resuming(base):  # type: ignore[valid-type,misc]
        _wk_last: ssl.SSLObject | None = None
        _wk_session: ssl.SSLSession | None = None

        @classmethod
        def _create(cls, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                    *args: object, **kwargs: object) -> ssl.SSLObject:
            last = cls._wk_last
            if last is not None:  # its tickets have arrived by now, if it got any
                with contextlib.suppress(ValueError, ssl.SSLError):
                    session = last.session
                    if session is not None and session.has_ticket:
                        cls._wk_session = session
            if kwargs.get("session") is None and cls._wk_session is not None:
                kwargs["session"] = cls._wk_session
            obj = super()._create(incoming, outgoing, *args, **kwargs)
            cls._wk_last = obj
            return obj  # type: ignore[no-any-return]

    ctx.sslobject_class = Resuming


class TLSForwarder(Forwarder):
    """A :class:`Forwarder` with a TLS listener, a TLS target, or both."""

    def __init__(self, listen: Address, target: Address, *, listen_tls: ListenTLS | None,
                 target_tls: TargetTLS | None, **kwargs: object) -> None:
        super().__init__(listen, target, **kwargs)  # type: ignore[arg-type]
        self._server_tls = listen_tls.setup(listen) if listen_tls is not None else None
        self._client_tls = target_tls.setup(target) if target_tls is not None else None
        self._listen_timeout = listen_tls.handshake_timeout if listen_tls else 0.0
        self._target_timeout = target_tls.handshake_timeout if target_tls else 0.0
        self._lsock: socket.socket | None = None
        self._target_label = target.hostport

    @property
    def server_tls(self) -> ServerTLS | None:
        """The listener's TLS setup (``issued_by``: the CA of an on-the-fly certificate)."""
        return self._server_tls

    # -- listening --------------------------------------------------------------------
    async def _start(self, sock: socket.socket | None, reuse_port: bool) -> None:
        if self._server_tls is None:
            await super()._start(sock, reuse_port)
            return
        if sock is None:
            sock = _bind(self.listen, reuse_port)
        sock.setblocking(False)
        self._lsock = sock
        name = sock.getsockname()
        self.address = Address(self.listen.scheme, str(name[0]), int(name[1]))
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept_ready)
        self._start_sweeper()

    def _accept_ready(self) -> None:
        lsock = self._lsock
        if lsock is None:
            return
        for _ in range(ACCEPT_BATCH):
            try:
                conn, peer = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE, ECONNABORTED...: try again on the next wake-up
                return
            host, port = str(peer[0]), int(peer[1])
            label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            refusal = ("shutting down" if self._closed or not self._accepting
                       else self.gate.refusal(host))
            if refusal is not None:
                conn.close()
                self._emit(ConnectionEnded("tcp", label, self._target_label, 0, 0, 0.0,
                                           "rejected", refusal))
                continue
            conn.setblocking(False)
            relay = self._new_relay()
            relay.client = label
            relay.on_start = self._handshaken
            if self._tap is not None:
                local = None
                with contextlib.suppress(OSError):
                    local = local_address(conn.getsockname())
                relay.tap = self._tap(ConnInfo("tcp", Address("tcp", host, port),
                                               self.address, self.target, local))
            self._relays.add(relay)
            task = asyncio.get_running_loop().create_task(self._handshake(conn, relay))
            self._connecting[relay] = task

    async def _handshake(self, conn: socket.socket, relay: Relay) -> None:
        tls = self._server_tls
        assert tls is not None
        loop = asyncio.get_running_loop()
        try:
            with handshaking(conn, server_side=True):  # the alert, and --record, on failure
                await loop.connect_accepted_socket(
                    relay.client_protocol, conn, ssl=tls.context,
                    ssl_handshake_timeout=self._listen_timeout)
        except asyncio.CancelledError:
            conn.close()
            self._unhandshaken(relay, relay.reason or "shutdown", "")
        except Exception as exc:  # every failed handshake is one event, never a crash
            conn.close()
            self._unhandshaken(relay, TLS_FAILED, _why(exc, tls))
        finally:
            if self._connecting.get(relay) is asyncio.current_task():
                del self._connecting[relay]

    def _unhandshaken(self, relay: Relay, reason: str, detail: str) -> None:
        if self._connecting.get(relay) is asyncio.current_task():
            del self._connecting[relay]
        relay.fail(reason, detail)  # no transport yet: the relay finishes at once

    def _handshaken(self, relay: Relay, transport: asyncio.Transport) -> None:
        # Admitted at accept time; the handshake task is ending: now reach the target.
        handshaken = getattr(relay.tap, "client_handshaken", None)  # a recording tap
        if handshaken is not None:
            handshaken(transport)
        if self._closed:
            relay.abort("shutdown")
            return
        self._connecting[relay] = asyncio.get_running_loop().create_task(self._connect(relay))

    def _dial(self, relay: Relay) -> None:
        # The coroutine path (TLS origination, and no per-forwarder loop for TLS listeners).
        self._connecting[relay] = asyncio.get_running_loop().create_task(self._connect(relay))

    def _new_relay(self) -> Relay:
        return Relay(target=self._target_label, on_done=self._relay_done,
                     on_start=self._admit, high=self._high, low=self._low,
                     client_tls=self._server_tls is not None,
                     target_tls=self._client_tls is not None)

    def _accept(self) -> asyncio.Protocol:
        return self._new_relay().client_protocol()

    # -- the target -------------------------------------------------------------------
    async def _connect(self, relay: Relay) -> None:
        tls = self._client_tls
        if tls is None:
            await super()._connect(relay)
            return
        loop = asyncio.get_running_loop()
        host, port = self.target.host, self.target.port
        try:
            with connect_errors(host, port, self.connect_timeout):
                async with asyncio.timeout(self.connect_timeout + self._target_timeout):
                    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                   proto=socket.IPPROTO_TCP)
                    sock = await connect_any(loop, infos)
                    try:
                        with handshaking(sock, server_side=False):  # alert, --record
                            transport, _ = await loop.create_connection(
                                relay.target_protocol, sock=sock, ssl=tls.context,
                                server_hostname=tls.server_hostname,
                                ssl_handshake_timeout=self._target_timeout)
                    except ssl.SSLError as exc:
                        sock.close()
                        err = explain_client_failure(exc, tls, self.target.hostport)
                        if err is not None:
                            raise err from exc
                        raise
                    except BaseException:
                        sock.close()
                        raise
            connected = getattr(relay.tap, "target_connected", None)  # a recording tap
            if connected is not None:
                connected(transport)
        except ConnectTimeout as exc:
            self.failed += 1
            relay.fail("timeout", str(exc))
        except NetError as exc:
            self.failed += 1
            relay.fail(TLS_FAILED if isinstance(exc, TLSError) else "refused", str(exc))
        finally:
            if self._connecting.get(relay) is asyncio.current_task():
                del self._connecting[relay]
            relay.target_gone()

    # -- stopping ---------------------------------------------------------------------
    def stop_accepting(self) -> None:
        if self._lsock is None:
            super().stop_accepting()
            return
        self._accepting = False
        with contextlib.suppress(RuntimeError):  # the loop may be closed already
            asyncio.get_running_loop().remove_reader(self._lsock.fileno())
        self._lsock.close()
        self._lsock = None


def _why(exc: Exception, tls: ServerTLS) -> str:
    if isinstance(exc, ConnectionError) and not exc.strerror:
        # uvloop: the client closed (or reset) before finishing its handshake.
        return ("the client closed the connection during the handshake (a client that "
                "does not trust our certificate does that)")
    return explain_server_failure(exc, tls.context, tls.client_ca)


def _bind(address: Address, reuse_port: bool) -> socket.socket:
    with bind_errors(address.host, address.port):
        infos = socket.getaddrinfo(address.host or None, address.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(sockaddr)
            sock.listen(1024)
        except BaseException:
            sock.close()
            raise
    return sock
