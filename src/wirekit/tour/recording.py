"""What the tour records: one pcapng file for its TCP, UDP and TLS sections, and the facts
each section noted so that the inspection section can check the file shows them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wirekit.capture.recorder import Recorder
    from wirekit.capture.tls_record import TlsLegTap

__all__ = ["DEFAULT_PATH", "TourRecording"]

DEFAULT_PATH = "wirekit-tour.pcapng"


@dataclass(slots=True)
class TourRecording:
    """The tour's recorder and what went into it (server ports by what they served)."""

    path: str
    recorder: Recorder
    tcp: dict[int, str] = field(default_factory=dict)  # server port -> "time", "http"
    http_uris: list[str] = field(default_factory=list)
    udp: list[int] = field(default_factory=list)  # server ports of the UDP exchanges
    tls: dict[int, str] = field(default_factory=dict)  # client port -> "1.3" / "1.2"

    @classmethod
    def start(cls, path: str | os.PathLike[str]) -> TourRecording:
        from wirekit.capture.recorder import Recorder

        full = os.path.abspath(os.fspath(path))
        return cls(full, Recorder(full))

    @property
    def empty(self) -> bool:
        return not (self.tcp or self.udp or self.tls)

    def tls_tap(self) -> TlsLegTap:
        """A tap for one ``wirekit.connect(tls://..., tls_hook=tap.context_hook)``."""
        from wirekit.capture.tls_record import TlsLegTap

        return TlsLegTap(self.recorder)

    def close(self) -> None:
        self.recorder.close()
