"""``--record FILE.pcapng``: the option and its status lines, shared by the commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from wirekit.capture.recorder import Recorder

__all__ = ["finish", "record_option", "start"]

F = TypeVar("F", bound=Callable[..., Any])


def record_option(func: F) -> F:
    return click.option(
        "--record", "record", type=click.Path(dir_okay=False, writable=True),
        metavar="FILE.pcapng",
        help="Write every connection to a pcapng file (Wireshark/tshark open it): TCP "
             "handshakes, data, FIN/RST and UDP datagrams with real addresses and "
             "timestamps; where wirekit speaks TLS, the ciphertext with its keys embedded "
             "(tshark decrypts it), the plaintext on a second interface (wirekit-plain), "
             "and failed handshakes too.")(func)


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
