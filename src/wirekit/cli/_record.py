"""``--record FILE.pcapng``: the option and its status lines, shared by the commands."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from wirekit.address import Address
from wirekit.capture.recorder import Recorder

__all__ = ["StreamLeg", "finish", "record_option", "start"]

F = TypeVar("F", bound=Callable[..., Any])


def record_option(func: F) -> F:
    return click.option(
        "--record", "record", type=click.Path(dir_okay=False, writable=True),
        metavar="FILE.pcapng",
        help="Write every connection to a pcapng file (Wireshark/tshark open it): "
             "handshakes, data, FIN/RST, real addresses and timestamps.")(func)


def _error(message: str) -> None:
    click.echo(f"wirekit: error: {message}", err=True)


def start(path: str | None) -> Recorder | None:
    """A recorder writing to ``path`` (None: no recording).  A full disk later prints one
    error line and stops the recording only."""
    if not path:
        return None
    return Recorder(path, on_error=_error)


def finish(rec: Recorder | None, *, quiet: bool = False, as_json: bool = False) -> None:
    """Close the file and say what was written (and dropped)."""
    if rec is None:
        return
    rec.close()
    if as_json:
        sys.stdout.write(json.dumps({"event": "recorded", "file": rec.path,
                                     "packets": rec.packets, "dropped": rec.dropped,
                                     "error": rec.error}) + "\n")
        sys.stdout.flush()
    if rec.dropped:
        click.echo(f"wirekit: warning: {rec.dropped} packets were not recorded (the writer "
                   f"could not keep up); the file shows the gaps", err=True)
    if not quiet and not as_json:
        click.echo(rec.summary(), err=True)


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
