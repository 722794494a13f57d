"""Relay taps that record: one per forwarded connection, two legs each.

A forwarded TCP connection is two TCP connections on the wire, and the recording shows
both, as ``tshark -i lo`` would:

* the client leg, client ``host:port`` <-> the listener's ``host:port``, opened when the
  forwarder admits the client;
* the target leg, wirekit's outgoing ``host:port`` <-> the target, opened when the
  forwarder's connect succeeds (:meth:`RecordingTap.target_connected`, the forwarder's one
  hook).  Bytes the client sent before that (early data) are held until then, so they
  follow the target leg's handshake.

``up`` bytes are the clients' on both legs, ``down`` bytes the target's; ``b""`` (a
half-close) is a FIN.  The forwarder's :class:`~wirekit.net.forward.ConnectionEnded` event
ends both legs: FINs for an orderly close (closed, idle, shutdown), RST for a reset or a
connect timeout.  UDP sessions are recorded on the client leg only (datagrams each way).

A ``tls://`` side is recorded as the ciphertext that crossed the wire, not as the
plaintext the tap sees: its context records every connection
(:func:`wirekit.capture.tls_record.record_context`), and the leg is taken over from the
connection's ``SSLObject`` once its handshake is done (:meth:`RecordingTap.client_handshaken`
for a terminating listener, :meth:`RecordingTap.target_connected` for an originated
target); the tap's plaintext then goes to the other leg only, on the recorder's second
interface (``wirekit-plain``).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wirekit.capture.flows import TcpLeg, UdpLeg

if TYPE_CHECKING:
    from wirekit.capture.recorder import Recorder
    from wirekit.net.forward import ConnectionEnded, ConnInfo

__all__ = ["RecordingTap", "forward_taps", "label", "listen_host"]

_ORDERLY = ("closed", "idle", "shutdown")


def label(host: str, port: int) -> str:
    """The forwarder's ``client`` label for an address (``[v6]:port`` or ``v4:port``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_host(listen: str, client: str) -> str:
    """The address a client reached on a listener bound to ``listen`` (bound to a wildcard:
    the client's own address when it is a loopback one, else its family's loopback)."""
    ip = ipaddress.ip_address(listen)
    if not ip.is_unspecified:
        return listen
    # Bound to every address: the client reached the one of its own family (loopback if
    # the client is local).
    c = ipaddress.ip_address(client)
    if c.is_loopback:
        return client if c.version == 4 else "::1"
    return "127.0.0.1" if c.version == 4 else "::1"


class RecordingTap:
    """The tap of one forwarded connection (callable like any relay tap)."""

    __slots__ = ("_client", "_held", "_rec", "_server", "client_leg", "inner", "target_leg",
                 "tls_client", "tls_target", "udp")

    def __init__(self, rec: Recorder, info: ConnInfo, inner: Callable[..., None] | None,
                 *, tls_client: bool = False, tls_target: bool = False) -> None:
        self.inner = inner
        self.tls_client = tls_client  # the client leg is ciphertext, not these bytes
        self.tls_target = tls_target
        client = (info.client.host, info.client.port)
        if info.local is not None:  # the address the client really reached
            server = (info.local.host, info.local.port)
        else:  # UDP on a wildcard listener: the kernel was not asked which address
            server = (listen_host(info.listen.host, info.client.host), info.listen.port)
        self._client, self._server = client, server
        self.udp: UdpLeg | None = None
        self.client_leg: TcpLeg | None = None
        self.target_leg: TcpLeg | None = None
        self._held: list[tuple[str, bytes, int]] | None = []
        if info.proto == "udp":
            self.udp = rec.udp(client, server)
            self._held = None
        elif not tls_client:
            self.client_leg = rec.tcp(client, server, plain=tls_target)
            self.client_leg.open(time.time_ns())
        if tls_target:
            self._held = None
        self._rec = rec

    def __call__(self, direction: str, data: bytes, ts: float) -> None:
        if self.inner is not None:
            self.inner(direction, data, ts)
        ns = int(ts * 1e9)
        side = "c" if direction == "up" else "s"
        if self.udp is not None:
            self.udp.data(side, data, ns)
            return
        leg = self.client_leg
        if not self.tls_client and leg is not None:
            if data:
                leg.data(side, data, ns)
            else:
                leg.fin(side, ns)
        if self.tls_target:
            return
        if self._held is not None:
            self._held.append((side, data, ns))
            return
        target = self.target_leg
        if target is not None:
            if data:
                target.data(side, data, ns + 1)
            else:
                target.fin(side, ns + 1)

    def client_handshaken(self, transport: Any) -> None:
        """The TLS client's handshake is done: its ciphertext becomes the client leg."""
        cipher = getattr(transport.get_extra_info("ssl_object"), "_wk_tap", None)
        if self.tls_client and cipher is not None and self.client_leg is None:
            self.client_leg = cipher.bind_pair(self._client, self._server)

    def target_connected(self, transport: Any) -> None:
        """The forwarder reached the target with ``transport``: open the target leg."""
        if self.udp is not None or self.target_leg is not None:
            return
        local = transport.get_extra_info("sockname")
        remote = transport.get_extra_info("peername")
        if not local or not remote:
            self._held = None
            return
        if self.tls_target:  # the TLS target's ciphertext, held since its first byte
            cipher = getattr(transport.get_extra_info("ssl_object"), "_wk_tap", None)
            if cipher is not None:
                self.target_leg = cipher.bind_pair((str(local[0]), int(local[1])),
                                                   (str(remote[0]), int(remote[1])))
            return
        leg = self._rec.tcp((str(local[0]), int(local[1])), (str(remote[0]), int(remote[1])),
                            plain=self.tls_client)
        opened = time.time_ns()
        leg.open(opened)
        self.target_leg = leg
        held, self._held = self._held or [], None
        for side, data, ns in held:  # early bytes: after the handshake in the file too
            ns = max(ns, opened)
            if data:
                leg.data(side, data, ns + 1)
            else:
                leg.fin(side, ns + 1)

    def ended(self, reason: str) -> None:
        ns = time.time_ns()
        self._held = None
        orderly = reason in _ORDERLY
        for leg, wirekit in ((self.client_leg, "s"), (self.target_leg, "c")):
            if leg is None:
                continue
            if orderly:
                leg.close(ns)
            else:
                leg.reset(wirekit, ns)


def forward_taps(rec: Recorder, inner: Any = None,
                 on_event: Callable[[ConnectionEnded], None] | None = None, *,
                 tls_client: bool = False, tls_target: bool = False,
                 ) -> tuple[Callable[[ConnInfo], RecordingTap], Callable[[ConnectionEnded],
                                                                         None]]:
    """The ``(tap, on_event)`` pair for :func:`wirekit.forward` that records every
    connection through ``rec`` (``inner`` and ``on_event`` still run)."""
    live: dict[tuple[str, str], RecordingTap] = {}

    def factory(info: ConnInfo) -> RecordingTap:
        tap = RecordingTap(rec, info, inner(info) if inner is not None else None,
                           tls_client=tls_client, tls_target=tls_target)
        live[(info.proto, label(info.client.host, info.client.port))] = tap
        return tap

    def event(ev: ConnectionEnded) -> None:
        tap = live.pop((ev.proto, ev.client), None)
        if tap is not None:
            tap.ended(ev.reason)
        if on_event is not None:
            on_event(ev)

    return factory, event
