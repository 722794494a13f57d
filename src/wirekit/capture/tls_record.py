"""Recording a TLS connection as the ciphertext that crossed the wire, keys included.

Theory of operation
-------------------
asyncio and uvloop drive TLS through an ``SSLObject`` made by ``context.sslobject_class``
over two ``MemoryBIO``s: the transport writes received ciphertext into *incoming* and
sends what appears in *outgoing*.  Neither BIO can be peeked, so the recording class puts
its own pair between them and OpenSSL, and moves the bytes across on every call::

    transport -> incoming ==(pulled, recorded "s")==> inner_in  -> OpenSSL
    transport <- outgoing <==(pushed, recorded "c")== inner_out <- OpenSSL

The session keys come from the context's key log (``keylog_filename``; a private
temporary file when the user did not ask for one).  After each call any new key-log lines
are recorded *before* the ciphertext pulled for that call, so the Decryption Secrets Block
lands ahead of the first records it decrypts (a one-pass reader like ``tshark -r``
decrypts the server's first encrypted flight too).

A leg is bound to its TCP connection (addresses, the SYN) as soon as its SSLObject is
made wherever wirekit runs the handshake (``connect tls://``, the TLS listeners of
``serve`` and ``forward``, a forward's TLS target): the handshake task's
:data:`wirekit.tls.handshake.HANDSHAKE` names the connection.  Otherwise events are held until
:meth:`TlsLegTap.bind_pair` and written after the leg's TCP handshake.

A failed handshake (the certificate refused, no client certificate, no common version)
is written all the same, which is what a user records to debug it: the ClientHello,
whatever the server sent, the alert, then the FINs (:meth:`TlsLegTap.failed`, called
through ``HANDSHAKE``: asyncio's exception alone often says nothing more than "reset").
The alert OpenSSL queued when it failed (``wk_alert``, sent by
:func:`wirekit.net.tls.handshaking` since the transport drops it) is recorded as sent.
A DSB is written only if the handshake got as far as making keys (TLS 1.3's handshake
secrets).

``pending()`` also counts the ciphertext waiting in the inner BIO: uvloop keeps calling
``read`` only while ``incoming.pending`` or ``pending()`` is non-zero.

A context shared by many connections (a ``tls://`` forward's listener or target,
:func:`record_context`) gives each ``SSLObject`` a tap of its own (``ssl_object._wk_tap``,
bound by the owner once that connection is made) and one key-log reader for them all:
OpenSSL writes a connection's keys during that connection's call, so the call that reads
them is the one whose ciphertext they decrypt.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
import tempfile
import time
import weakref
from typing import TYPE_CHECKING, Any

from wirekit.capture.flows import TcpLeg
from wirekit.tls.handshake import HANDSHAKE

if TYPE_CHECKING:
    from wirekit.address import Address
    from wirekit.capture.recorder import Recorder
    from wirekit.tls.handshake import Handshake

__all__ = ["TlsLegTap", "plain_endpoints", "record_context"]


def plain_endpoints(client: tuple[str, int],
                    server: tuple[str, int]) -> tuple[tuple[str, int], tuple[str, int]]:
    """The endpoints the plaintext leg of a TLS connection is written with, when wirekit
    itself is the TLS client (``connect tls://``) or server (``serve SERVICE tls://``).

    The plaintext crossed no wire of its own, so it is drawn as the same connection, on
    the second interface.  tshark and Wireshark tell TCP connections apart by addresses
    and ports only (not by interface), so the same four would join the two legs into one
    broken stream: the plaintext leg shows the same hosts in the other IP notation,
    IPv4 as IPv4-mapped IPv6 (``::ffff:127.0.0.1``) and IPv4-mapped IPv6 as plain IPv4,
    with the same ports.  An IPv6 address has no other notation: there the client's port
    is shown with its top bit flipped instead (Linux's ephemeral ports, 32768 and up, then
    land below 32768, where clients rarely are).
    """
    c = ipaddress.ip_address(client[0])
    s = ipaddress.ip_address(server[0])
    if c.version == s.version == 4:
        return ((f"::ffff:{c}", client[1]), (f"::ffff:{s}", server[1]))
    if (isinstance(c, ipaddress.IPv6Address) and isinstance(s, ipaddress.IPv6Address)
            and c.ipv4_mapped is not None and s.ipv4_mapped is not None):
        return ((str(c.ipv4_mapped), client[1]), (str(s.ipv4_mapped), server[1]))
    return ((client[0], client[1] ^ 0x8000), server)


class TlsLegTap:
    """The ciphertext leg of one TLS client connection (``context_hook`` before
    connecting, ``bind`` once connected, ``end`` at the end)."""

    def __init__(self, rec: Recorder, *, keys: _SharedKeyLog | None = None,
                 server_side: bool = False) -> None:
        self.rec = rec
        self._shared = keys
        self._server_side = server_side
        self.leg: TcpLeg | None = None
        self._held: list[tuple[str, bytes, int]] | None = []
        self._keylog: str | None = None
        self._own_keylog: str | None = None
        self._offset = 0
        self._alerted = False  # we sent an alert (a failed handshake: we close first)

    def context_hook(self, ctx: ssl.SSLContext) -> None:
        if not ctx.keylog_filename:
            fd, path = tempfile.mkstemp(prefix="wirekit-keys-", suffix=".log")
            os.close(fd)
            os.unlink(path)  # the ssl module creates it, private to us
            ctx.keylog_filename = path
            self._own_keylog = path
        self._keylog = ctx.keylog_filename
        with contextlib.suppress(OSError):
            self._offset = os.path.getsize(self._keylog)
        base = ctx.sslobject_class or ssl.SSLObject
        ctx.sslobject_class = _recording_class(base, self)

    # -- called by the recording SSLObject ----------------------------------------------
    def _keys(self) -> None:
        if self._shared is not None:
            lines = self._shared.read()
            if lines:
                self._event("k", lines)
            return
        if self._keylog is None:
            return
        try:
            with open(self._keylog, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1  # whole lines only
        if end:
            self._offset += end
            self._event("k", data[:end])

    def _cipher(self, side: str, data: bytes) -> None:
        if self._server_side:  # received bytes are the client's ("c"), sent ones ours
            side = "c" if side == "s" else "s"
        self._event(side, data)

    def _event(self, kind: str, data: bytes) -> None:
        ns = time.time_ns()
        if self._held is not None:
            self._held.append((kind, data, ns))
        else:
            self._apply(kind, data, ns)

    def _apply(self, kind: str, data: bytes, ns: int) -> None:
        if kind == "k":
            self.rec.secrets(data)
        elif self.leg is not None:
            self.leg.data(kind, data, ns)

    def _failed(self, exc: ssl.SSLError) -> None:
        # The alert OpenSSL queued: wirekit.net.tls.handshaking sends it (wk_alert) once
        # the transport gave up.
        alert = getattr(exc, "wk_alert", b"")
        if alert:
            self._cipher("c", alert)
            self._alerted = True

    # -- owner --------------------------------------------------------------------------
    def failed(self, client: tuple[str, int] | None = None,
               server: tuple[str, int] | None = None) -> None:
        """The handshake failed: write the leg ``client`` <-> ``server`` with what was held
        (ClientHello, what the server sent, the alert), then its end.  There are keys (a
        DSB) only if the handshake got far enough to make some (TLS 1.3's handshake keys).
        Idempotent."""
        if self.leg is None and client is not None and server is not None:
            self.bind_pair((str(client[0]), int(client[1])), (str(server[0]), int(server[1])))
        leg = self.leg
        if leg is not None and not leg.done:
            ns = time.time_ns()
            ours = "s" if self._server_side else "c"
            # Who sent the alert closes first; without an alert of ours it was the peer.
            leg.fin(ours if self._alerted else ("c" if ours == "s" else "s"), ns)
            leg.close(ns)
        self.end()

    def _on_handshake(self, tcp: Handshake | None) -> None:
        # Made for the TCP connection whose handshake wirekit runs: bind to it at once,
        # and hear of a failure (wirekit.net.tls.handshaking).
        if (tcp is not None and tcp.server_side == self._server_side
                and tcp.client is not None and tcp.server is not None):
            self.bind_pair(tcp.client, tcp.server)
            tcp.on_failure.append(self.failed)

    def bind(self, local: Address, peer: Address) -> None:
        self.bind_pair((local.host, local.port), (peer.host, peer.port))

    def bind_pair(self, client: tuple[str, int], server: tuple[str, int]) -> TcpLeg:
        """Open the leg ``client`` <-> ``server`` and write what was held (once: a leg
        already bound is returned as it is)."""
        if self.leg is not None:
            return self.leg
        held, self._held = self._held or [], None
        self.leg = self.rec.tcp(client, server)
        opened = min([ns for _, _, ns in held] or [time.time_ns()])
        self.leg.open(opened)
        for kind, data, ns in held:
            self._apply(kind, data, ns)
        return self.leg

    def end(self, *, reset: bool = False) -> None:
        """The connection ended (FINs, or our RST).  A leg never bound (the TCP connection
        was never made) writes nothing."""
        if self.leg is not None and not self.leg.done:
            ns = time.time_ns()
            self.leg.reset("s", ns) if reset else self.leg.close(ns)
        if self._own_keylog is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._own_keylog)


class _SharedKeyLog:
    """A context's key log, read on from where the last read stopped (one per context).

    Without a key log of the user's, a private temporary one is opened and unlinked at
    once: the ssl module and this reader keep their descriptors, nothing is left behind."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        path = ctx.keylog_filename
        private = not path
        if private:
            fd, path = tempfile.mkstemp(prefix="wirekit-keys-", suffix=".log")
            os.close(fd)
            os.unlink(path)
            ctx.keylog_filename = path  # the ssl module creates it
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        weakref.finalize(ctx, os.close, self._fd)  # closed with the context
        if private:
            os.unlink(path)
        self._offset = os.fstat(self._fd).st_size

    def read(self) -> bytes:
        try:
            data = os.pread(self._fd, 1 << 20, self._offset)
        except OSError:
            return b""
        end = data.rfind(b"\n") + 1  # whole lines only
        self._offset += end
        return data[:end]


def record_context(ctx: ssl.SSLContext, rec: Recorder, *, server_side: bool = False) -> None:
    """Record every connection ``ctx`` makes as ciphertext plus keys: each ``SSLObject``
    carries its own :class:`TlsLegTap` as ``_wk_tap`` (bind it with ``bind_pair`` once the
    connection is made).  ``server_side``: the context accepts (a listener)."""
    keys = _SharedKeyLog(ctx)
    base = ctx.sslobject_class or ssl.SSLObject
    ctx.sslobject_class = _recording_class(
        base, lambda: TlsLegTap(rec, keys=keys, server_side=server_side))


def _recording_class(base: Any, tap: TlsLegTap | Any) -> Any:
    make = tap if not isinstance(tap, TlsLegTap) else (lambda: tap)

    class _Recording(base):  # type: ignore[misc]
        @classmethod
        def _create(cls, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, *args: Any,
                    **kwargs: Any) -> Any:
            inner_in, inner_out = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = super()._create(inner_in, inner_out, *args, **kwargs)
            obj._wk_bios = (incoming, outgoing, inner_in, inner_out)
            obj._wk_tap = tap = make()
            tap._on_handshake(HANDSHAKE.get())
            return obj

        def _wk_call(self, fn: Any, *args: Any) -> Any:
            outer_in, outer_out, inner_in, inner_out = self._wk_bios
            tap = self._wk_tap
            pulled = outer_in.read()
            if pulled:
                inner_in.write(pulled)
            if outer_in.eof and not inner_in.eof:
                inner_in.write_eof()
            failed: ssl.SSLError | None = None
            try:
                return fn(*args)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLSyscallError):
                raise  # asyncio and uvloop retry on these (their SSLAgainErrors)
            except ssl.SSLError as exc:
                failed = exc
                raise
            finally:
                tap._keys()
                if pulled:
                    tap._cipher("s", pulled)
                pushed = inner_out.read()
                if pushed:
                    outer_out.write(pushed)
                    if failed is None:  # a failed call's output (its alert) is not
                        tap._cipher("c", pushed)  # flushed by the transport: not here
                if failed is not None:
                    tap._failed(failed)

        def do_handshake(self) -> None:
            self._wk_call(super().do_handshake)

        def read(self, *args: Any) -> Any:
            return self._wk_call(super().read, *args)

        def write(self, data: Any) -> int:
            return int(self._wk_call(super().write, data))

        def unwrap(self) -> Any:
            return self._wk_call(super().unwrap)

        def pending(self) -> int:
            # uvloop reads while ``incoming.pending or sslobj.pending()``: ciphertext
            # already moved into inner_in (say a close_notify behind the last data
            # record) must count, or it is never read.
            return int(super().pending()) + int(self._wk_bios[2].pending)

    return _Recording
