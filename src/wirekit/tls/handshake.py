"""The TCP connection whose TLS handshake runs in the current task (:data:`HANDSHAKE`).

:func:`wirekit.net.tls.handshaking` sets it around every handshake wirekit runs; a
recording ``SSLObject`` (:mod:`wirekit.capture.tls_record`) reads it.  It lives here, below
both, so that ``capture/`` need not import ``net/``.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["HANDSHAKE", "Handshake"]


@dataclass(slots=True)
class Handshake:
    """The TCP connection whose TLS handshake runs in the current task.

    The SSLObject is made in a callback of the transport, which runs in a copy of the
    task's context: through :data:`HANDSHAKE`, its class (``sslobject_class``, e.g. a
    recording one, :mod:`wirekit.capture.tls_record`) learns which TCP connection it
    serves and may ask to hear of a failed handshake (``on_failure``), which the
    exception alone cannot tell it (a refused certificate often shows as a bare reset).
    """

    server_side: bool
    client: tuple[str, int] | None  # None: the socket was gone before we asked
    server: tuple[str, int] | None
    on_failure: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def of(cls, sock: socket.socket, *, server_side: bool) -> Handshake:
        local = peer = None
        with contextlib.suppress(OSError):
            name, other = sock.getsockname(), sock.getpeername()
            local, peer = (str(name[0]), int(name[1])), (str(other[0]), int(other[1]))
        return cls(True, peer, local) if server_side else cls(False, local, peer)

    def failed(self) -> None:
        for callback in self.on_failure:
            with contextlib.suppress(Exception):  # a recorder's trouble is not the caller's
                callback()


HANDSHAKE: contextvars.ContextVar[Handshake | None] = contextvars.ContextVar(
    "wirekit_tls_handshake", default=None)
