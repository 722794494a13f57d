"""Recording a client's own stream (``wirekit.connect(record=)``, ``open_udp(record=)``).

The connection calls the leg as things happen: ``sent``/``received`` for each chunk (or
datagram), ``fin`` for a FIN (ours at ``shutdown_write``, the peer's when it arrives),
``end`` when it is closed (the FINs still missing, client first) or reset.  A TLS
connection's plaintext is drawn on the recorder's second interface between the endpoints
:func:`wirekit.capture.tls_record.plain_endpoints` gives; its ciphertext is a
:class:`~wirekit.capture.tls_record.TlsLegTap` of its own.
"""

from __future__ import annotations

import time

from wirekit.address import Address
from wirekit.capture.flows import TcpLeg, UdpLeg
from wirekit.capture.recorder import Recorder

__all__ = ["StreamLeg"]


class StreamLeg:
    """The recorded leg of a client connection: our socket is the client (``c``), the peer
    the server (``s``).

    ``udp``: a UDP endpoint (each call is one datagram; nothing to end).  ``plain``: the
    plaintext of a TLS connection, on the recorder's second interface."""

    def __init__(self, rec: Recorder, local: Address, peer: Address, *, udp: bool = False,
                 plain: bool = False) -> None:
        client, server = (local.host, local.port), (peer.host, peer.port)
        self.leg: TcpLeg | UdpLeg
        if udp:
            self.leg = rec.udp(client, server)
            return
        if plain:
            from wirekit.capture.tls_record import plain_endpoints

            client, server = plain_endpoints(client, server)
        self.leg = rec.tcp(client, server, plain=plain)
        self.leg.open(time.time_ns())

    def sent(self, data: bytes) -> None:
        self.leg.data("c", bytes(data), time.time_ns())

    def received(self, data: bytes) -> None:
        self.leg.data("s", bytes(data), time.time_ns())

    def fin(self, side: str) -> None:
        """``side`` (``"c"``: we, ``"s"``: the peer) sent its FIN."""
        if isinstance(self.leg, TcpLeg):
            self.leg.fin(side, time.time_ns())

    def end(self, *, reset: bool = False, side: str = "s") -> None:
        """The connection ended: the FINs not yet seen (client first), or ``side``'s RST
        (the peer's by default; ``"c"``: we aborted)."""
        leg = self.leg
        if not isinstance(leg, TcpLeg):
            return
        if reset:
            leg.reset(side, time.time_ns())
        else:
            leg.close(time.time_ns())
