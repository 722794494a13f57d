"""Recording a client's own stream (``wirekit connect --record``) from its callbacks."""

from __future__ import annotations

import time
from collections.abc import Callable

from wirekit.address import Address
from wirekit.capture.flows import TcpLeg, UdpLeg
from wirekit.capture.recorder import Recorder

__all__ = ["StreamLeg"]


class StreamLeg:
    """The recorded leg of a client connection (``wirekit connect``): what the session
    sent and received, wrapped around its ``on_sent``/``on_data`` callbacks.

    ``udp``: a UDP session (each callback is one datagram; nothing to end).  ``plain``:
    the plaintext of a TLS connection, on the recorder's second interface, between the
    endpoints :func:`wirekit.capture.tls_record.plain_endpoints` gives."""

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

    def on_sent(self, inner: Callable[[bytes], None]) -> Callable[[bytes], None]:
        def sent(data: bytes) -> None:
            self.leg.data("c", bytes(data), time.time_ns())
            inner(data)
        return sent

    def on_data(self, inner: Callable[[bytes], None]) -> Callable[[bytes], None]:
        def received(data: bytes) -> None:
            self.leg.data("s", bytes(data), time.time_ns())
            inner(data)
        return received

    def end(self, *, reset: bool = False) -> None:
        leg = self.leg
        if not isinstance(leg, TcpLeg):
            return
        if reset:
            leg.reset("s", time.time_ns())
        else:
            leg.close(time.time_ns())
