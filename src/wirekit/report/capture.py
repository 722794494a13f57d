"""Per-packet summary lines for a live capture, the same lines ``wirekit inspect --packets``
prints (``wirekit.dissect.summary.Summary`` makes both).

Each captured frame is handed to the one ``Summary`` as a tiny pcapng fragment (the first
call carries the section and interface headers), so conversation state -- relative sequence
numbers, stream numbering -- carries across packets exactly as when a file is inspected.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from wirekit.dissect.summary import Summary
from wirekit.pcapng.writer import PcapngWriter

__all__ = ["PacketLines"]


class PacketLines:
    """``add(timestamp_ns, frame, original_length)`` calls ``emit(line)`` once per frame."""

    def __init__(self, linktype: int, emit: Callable[[str], None]) -> None:
        self._buf = io.BytesIO()
        self._writer = PcapngWriter(self._buf, flush=False, application=None)
        self._writer.add_interface(linktype)
        self._summary = Summary(app=False, on_packet=emit)
        self._feed()

    def _feed(self) -> None:
        data = self._buf.getvalue()
        self._buf.seek(0)
        self._buf.truncate()
        self._summary.run(data)

    def add(self, timestamp_ns: int, frame: bytes, original_length: int) -> None:
        self._writer.write_packet(0, frame, timestamp_ns, original_length=original_length)
        self._feed()
