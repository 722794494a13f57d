"""Recording a client's own stream (``wirekit connect --record``) from its callbacks."""

from __future__ import annotations

import time
from collections.abc import Callable

from wirekit.address import Address
from wirekit.capture.recorder import Recorder

__all__ = ["StreamLeg"]


class StreamLeg:
    """The recorded leg of a client connection (``wirekit connect``): what the session
    sent and received, wrapped around its ``on_sent``/``on_data`` callbacks."""

    def __init__(self, rec: Recorder, local: Address, peer: Address) -> None:
        self.leg = rec.tcp((local.host, local.port), (peer.host, peer.port))
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
        if reset:
            self.leg.reset("s", time.time_ns())
        else:
            self.leg.close(time.time_ns())
