"""``Recorder``: relay taps from many connections written to one pcapng file.

Theory of operation
-------------------
::

    event loop (taps)                          writer thread
    ---------------------------------------    -----------------------------------------
    TcpLeg/UdpLeg: seq/ack bookkeeping  --->   bounded queue  --->  flows.frames()
    offer(event): put_nowait, or count         (batches)            PcapngWriter.write_packets
    the event's packets as dropped                                   (one write + flush a batch)

The loop side never blocks: when the queue is full (or holds more than ``max_bytes`` of
payload), the event is dropped and its packets counted in :attr:`dropped`; sequence
numbers still advance, so the file shows the gap the way a capture tool shows lost
packets.  Every batch is written whole and flushed, so a killed process leaves a file that
reads up to its last complete block.  A write error (disk full, EIO) stops the recording:
one line through ``on_error``, later events are ignored, and the relay carries on.

Interfaces: everything is on interface 0, named ``wirekit``, as Ethernet frames: both legs
of a forward (client <-> wirekit's listener, and wirekit's outgoing socket <-> the target),
exactly the two connections ``tshark -i lo`` would list for a forward on loopback.  Where
wirekit terminates or originates TLS, the TLS leg (ciphertext) stays on interface 0 and the
plaintext leg goes to interface 1, ``wirekit-plain``, added the first time it is needed
(legs made with ``tcp(..., plain=True)``; their events are queued as ``(1, event)``).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import threading
from collections.abc import Callable
from typing import IO, Any

from wirekit.capture.flows import Event, TcpLeg, UdpLeg, frames
from wirekit.errors import UsageError
from wirekit.pcapng.blocks import LINKTYPE_ETHERNET
from wirekit.pcapng.writer import PcapngWriter

__all__ = ["DEFAULT_QUEUE", "Recorder"]

DEFAULT_QUEUE = 8192  # events (one relay chunk each)
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # payload waiting to be written
_BATCH_BYTES = 1024 * 1024  # payload per write: the queue's room comes back in small steps


class Recorder:
    """Write recorded connections to ``path`` (pcapng) from a background thread.

    Use :meth:`tcp` / :meth:`udp` for a leg, feed it from taps; :meth:`forward_hooks`
    builds the tap factory and event hook of :func:`wirekit.forward`
    (see :mod:`wirekit.capture.relay_tap`).
    ``close()`` writes what is queued and closes the file.
    """

    def __init__(self, path: str | os.PathLike[str], *, queue_size: int = DEFAULT_QUEUE,
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.path = os.fspath(path)
        try:
            self._file: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise UsageError(f"cannot record to {self.path}: {exc.strerror or exc}") from exc
        try:
            self._writer = PcapngWriter(self._file)
            self._iface = self._writer.add_interface(LINKTYPE_ETHERNET, name="wirekit")
        except OSError as exc:
            self._file.close()
            raise UsageError(f"cannot record to {self.path}: {exc.strerror or exc}") from exc
        self.on_error = on_error
        self.max_bytes = max_bytes
        self.packets = 0  # written
        self.dropped = 0  # packets (events) not written because the queue was full
        self.dropped_events = 0
        self.error: str | None = None
        self._queued_bytes = 0  # changed by the loop side only
        self._written_bytes = 0  # changed by the writer thread only
        # A deque, not queue.Queue: appending takes no lock and wakes no thread.  The writer
        # sleeps on _wake only when it found the deque empty (then one set() wakes it).
        self._q: collections.deque[Event] = collections.deque()
        self._queue_size = max(1, queue_size)
        self._wake = threading.Event()
        self._stopping = False
        self._isn = 1000
        self._plain: int | None = None  # interface 1, once a plaintext leg needs it
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="wirekit-recorder", daemon=True)
        self._thread.start()

    # -- loop side --------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.error is None and not self._closed

    def offer(self, event: Event, iface: int = 0) -> None:
        """Queue one event for writing; never blocks (a full queue counts a drop)."""
        if self.error is not None or self._closed:
            return
        size = len(event[6])
        if size and self._queued_bytes - self._written_bytes + size > self.max_bytes:
            self._drop(event)
            return
        q = self._q
        if len(q) >= self._queue_size:
            self._drop(event)
            return
        q.append(event if not iface else (iface, event))  # type: ignore[arg-type]
        self._queued_bytes += size
        if not self._wake.is_set():
            self._wake.set()

    def secrets(self, keylog: bytes) -> None:
        """Queue NSS key-log lines, written as a Decryption Secrets Block in order."""
        self.offer((0, (b"", 0), (b"", 0), 0, 0, 0, keylog, 0, False))

    def _drop(self, event: Event) -> None:
        self.dropped_events += 1
        n = len(event[6])
        if event[0] == 6:
            mss = 1460 if len(event[1][0]) == 4 and event[1][0][:1] != b"\x7f" else 65495
            self.dropped += max(1, -(-n // mss)) + (1 if event[8] else 0)
        else:
            self.dropped += 1

    def tcp(self, client: tuple[str, int], server: tuple[str, int], *,
            plain: bool = False) -> TcpLeg:
        """A new TCP leg (call ``open(ts_ns)`` for its handshake).  ``plain``: the
        plaintext leg of a TLS connection wirekit terminates or originates (interface 1)."""
        self._isn = (self._isn * 1103515245 + 12345) & 0x7FFFFFFF
        return TcpLeg(self._offer_plain if plain else self.offer, client, server,
                      isn=self._isn)

    def _offer_plain(self, event: Event) -> None:
        self.offer(event, 1)

    def udp(self, client: tuple[str, int], server: tuple[str, int]) -> UdpLeg:
        return UdpLeg(self.offer, client, server)

    def forward_hooks(self, tap: Any = None, on_event: Any = None, *,
                      tls_client: bool = False, tls_target: bool = False) -> tuple[Any, Any]:
        """The ``(tap, on_event)`` pair for :func:`wirekit.forward` that records every
        connection (the given ``tap`` factory and ``on_event`` still run).  ``tls_client`` /
        ``tls_target``: that side is TLS, recorded as ciphertext (the forwarder's contexts
        go through :func:`wirekit.capture.tls_record.record_context`)."""
        from wirekit.capture.relay_tap import forward_taps

        return forward_taps(self, tap, on_event, tls_client=tls_client,
                            tls_target=tls_target)

    # -- writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        q = self._q
        ident = 0
        cache: list[object] = [None, 0, []]
        while True:
            if not q:
                if self._stopping:
                    return
                self._wake.clear()
                if not q and not self._stopping:
                    self._wake.wait(0.5)
                continue
            batch: list[Event] = []
            room = _BATCH_BYTES
            while q and len(batch) < 512 and room > 0:
                event = q.popleft()
                batch.append(event)
                room -= len(event[6] if len(event) != 2 else event[1][6])
            if self.error is None:
                packets: list[tuple[bytes, int, int]] = []
                size = 0
                iface = self._iface
                try:
                    for event in batch:
                        want = self._iface
                        if len(event) == 2:  # (1, event): the plaintext interface
                            event = event[1]
                            want = self._plain_iface()
                        if want != iface:
                            self._writer.write_packets(iface, packets)
                            self.packets += len(packets)
                            packets, iface = [], want
                        size += len(event[6])
                        if event[0] == 0:  # TLS keys: a DSB ahead of what they decrypt
                            self._writer.write_packets(iface, packets)
                            self.packets += len(packets)
                            packets = []
                            self._writer.write_secrets(event[6])
                            continue
                        ts = event[7]
                        for frame in frames(event, ident, cache):
                            ident += 1
                            packets.append((frame, ts, len(frame)))
                    self._writer.write_packets(iface, packets)
                    self.packets += len(packets)
                except OSError as exc:
                    self._fail(exc)
                self._written_bytes += size

    def _plain_iface(self) -> int:
        if self._plain is None:  # writer thread: the IDB goes in before its first packet
            self._plain = self._writer.add_interface(LINKTYPE_ETHERNET, name="wirekit-plain")
        return self._plain

    def _fail(self, exc: OSError) -> None:
        name = errno.errorcode.get(exc.errno or 0, "")
        reason = exc.strerror or str(exc)
        self.error = (f"recording to {self.path} stopped: {reason}"
                      + (f" ({name})" if name else "")
                      + f" after {self.packets} packets; the connections carry on")
        if self.on_error is not None:
            with contextlib.suppress(Exception):
                self.on_error(self.error)

    # -- lifecycle --------------------------------------------------------------------
    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then close the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._file.close()

    async def aclose(self, timeout: float = 30.0) -> None:
        import asyncio

        await asyncio.to_thread(self.close, timeout)

    def summary(self) -> str:
        text = f"recorded {self.packets} packets to {self.path}"
        if self.dropped:
            text += (f"; {self.dropped} packets dropped (the writer could not keep up: "
                     f"{self.dropped_events} relay chunks)")
        return text

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Recorder {self.path} packets={self.packets} dropped={self.dropped}>"

