"""The recorder's writer process: events from a shared-memory ring to pcapng blocks.

Theory of operation
-------------------
Building frames (checksums over every payload byte) and writing them is work the relay
must not wait for, and a thread would take the interpreter lock from the event loop for
all of it.  So the :class:`~wirekit.capture.recorder.Recorder` starts this small process
(``python -c ... main()``) and hands it four descriptors: the pcapng file (its header and
interface 0 already written), a shared memory block, the read end of a *wake* pipe and the
write end of a *status* pipe::

    relay process (Recorder.offer)            writer process (main)
    -----------------------------------       ------------------------------------------
    record header + payload --> ring  ------> segments(): headers + payload slices
    write_pos (published after the copy)      os.writev: whole EPB/IDB/DSB blocks
    one byte on the wake pipe, only if        read_pos, packets, events, payload bytes
    the writer said it sleeps                 (published after each write)
    drop + count if the ring is full          "error ERRNO TEXT" / "done" on the status pipe

The control area at the start of the block holds the counters (below); the ring follows
(and ``RECORD.size`` spare bytes, so a header is always readable at any record offset).
Positions only grow; ``pos % capacity`` is the offset.  A record's header never wraps
(when it does not fit before the end, a ``WRAP`` record fills the rest); its payload may
continue at the start of the ring.  The relay writes the payload of
the second leg of a forward (the same bytes object as the first leg's) as a ``SAME``
record with no payload: the writer uses the previous ``EVENT``'s payload, of which it
keeps a copy (so every slot it has read is free again at once).

Memory ordering: the relay stores the record, then ``write_pos``, with plain stores into the
mapping.  x86-64 keeps stores in order (TSO), so the writer never sees a position ahead of
its record; on a weakly ordered CPU (aarch64) that is not guaranteed.  A header that cannot
be (a length that is zero, unaligned or past the ring) stops the recording with one error
line instead of looping; a torn payload there would go unnoticed.

Priority: the writer runs at ``nice`` 10.  With CPU to spare it keeps up and records
everything; when the CPUs are saturated (a bulk transfer on a busy machine), the relay and
its peers keep the CPU, the ring overflows and the drops are counted, as the issue asks
("never slow the relay; count and report the drops rather than stall").

Lifetime: the writer exits once the wake pipe reports end-of-file (the relay process
closed it, or died) and the ring is drained; so a killed relay still leaves every queued
event in the file.  SIGINT/SIGTERM are ignored (a terminal's Ctrl-C reaches the whole
process group; the relay process decides when recording ends).  A write error (ENOSPC,
EIO) is reported once; later records are consumed without writing.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import signal
import struct
import sys

from wirekit.capture.flows import segments
from wirekit.pcapng.blocks import BLOCK_EPB, LINKTYPE_ETHERNET
from wirekit.pcapng.writer import PcapngWriter

__all__ = ["CONTROL", "EVENT", "NICE", "RECORD", "SAME", "SECRETS", "WRAP", "main"]

# Control area: write_pos (relay), then read_pos, packets, events, payload bytes (writer),
# then the writer's "sleeping" byte at offset 40.
CONTROL = 64
COUNTERS = struct.Struct("<QQQQ")  # at offset 8, written by the writer
POSITION = struct.Struct("<Q")  # at offset 0, written by the relay
SLEEPING = 40

# One record: length (whole record, a multiple of 8), kind, interface, proto, flags,
# ack_after, address length (4 or 16), ports, seq, ack, timestamp (ns), payload length,
# addresses; the payload follows.
RECORD = struct.Struct("<IBBBBBBHHIIqI16s16s")
WRAP, EVENT, SAME, SECRETS = 0, 1, 2, 3

# The relay comes first: when the CPUs are busy the writer gets less than its fair share
# and the ring's overflow is counted as drops, rather than the writer taking half the CPU
# from the relay.  10 (nice's own default) rather than 19: a writer at 19 also loses to
# every unrelated process on a busy host and records visibly less (see the commit log).
NICE = 10
_IOV = 1000  # buffers per writev (IOV_MAX is 1024 on Linux)
_BATCH = 8 * 1024 * 1024  # bytes per writev, at most: counters come back in steps
_EPB = struct.Struct("<IIIIIII")
_TAIL = struct.Struct("<I")
_ZEROS = (b"", b"\0", b"\0\0", b"\0\0\0")


def _writev(fd: int, bufs: list[bytes | memoryview]) -> None:
    """All of ``bufs``, however many calls it takes (a partial write is continued)."""
    while bufs:
        chunk = bufs[:_IOV]
        n = os.writev(fd, chunk)
        k = 0
        while k < len(chunk) and n >= len(chunk[k]):
            n -= len(chunk[k])
            k += 1
        bufs = bufs[k:]
        if n:
            bufs[0] = memoryview(bufs[0])[n:]


class _Writer:
    """The writer's state: ring position, counters, the pcapng writer for IDB and DSB."""

    def __init__(self, file_fd: int, mm: mmap.mmap, capacity: int, status_fd: int) -> None:
        self.fd = file_fd
        self.mm = mm
        self.ring = memoryview(mm)
        self.capacity = capacity
        self.status = status_fd
        self.pcapng = PcapngWriter(os.fdopen(file_fd, "wb", buffering=0, closefd=False),
                                   resume=1)
        self.plain: int | None = None
        self.failed = False
        self.rpos = 0
        self.packets = self.events = self.payload = 0
        self.last: bytes | None = None  # the last EVENT's payload, for a SAME record
        self.ident = 0
        self.cache: list[object] = [None, 0, []]

    def say(self, line: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self.status, line.encode() + b"\n")

    def fail(self, exc: OSError) -> None:
        if not self.failed:
            self.failed = True
            self.say(f"error {exc.errno or 0} {exc.strerror or exc}")

    def publish(self) -> None:
        COUNTERS.pack_into(self.mm, 8, self.rpos, self.packets, self.events, self.payload)

    def flush(self, bufs: list[bytes | memoryview], frames: int) -> None:
        if bufs and not self.failed:
            try:
                _writev(self.fd, bufs)
            except OSError as exc:
                self.fail(exc)
            else:
                self.packets += frames
        bufs.clear()

    def drain(self, wpos: int) -> None:
        """Write the records up to ``wpos`` (in batches; counters after each)."""
        mm, ring, cap = self.mm, self.ring, self.capacity
        unpack, pack, tail = RECORD.unpack_from, _EPB.pack, _TAIL.pack
        size = RECORD.size
        while self.rpos < wpos:
            bufs: list[bytes | memoryview] = []
            frames = nbytes = 0
            while self.rpos < wpos and len(bufs) < _IOV and nbytes < _BATCH:
                off = self.rpos % cap
                (length, kind, iface, proto, flags, ack_after, alen, sport, dport, seq, ack,
                 ts, plen, src, dst) = unpack(mm, CONTROL + off)
                if length < 8 or length & 7 or length > cap or (
                        kind != WRAP and RECORD.size + plen > length):
                    raise RingCorrupt(f"bad record at ring position {self.rpos}")
                self.rpos += length
                if kind == WRAP:
                    continue
                self.events += 1
                payload: bytes | memoryview
                if kind == SAME and self.last is not None:
                    payload = self.last
                else:
                    start = CONTROL + off + size
                    end = start + plen
                    if end <= CONTROL + cap:
                        payload = ring[start:end]
                    else:  # around the end of the ring
                        payload = b"".join((ring[start : CONTROL + cap],
                                            ring[CONTROL : end - cap]))
                    self.payload += plen
                    if kind == EVENT and plen:
                        # A copy (one memcpy): the ring slot is free once published.
                        self.last = payload = bytes(payload)
                if self.failed:
                    continue
                if kind == SECRETS:  # ahead of the packets they decrypt
                    self.flush(bufs, frames)
                    frames = 0
                    try:
                        self.pcapng.write_secrets(bytes(payload))
                    except OSError as exc:
                        self.fail(exc)
                    continue
                ifid = 0
                if iface:
                    if self.plain is None:  # its IDB before its first packet
                        self.flush(bufs, frames)
                        frames = 0
                        try:
                            self.plain = self.pcapng.add_interface(LINKTYPE_ETHERNET,
                                                                   name="wirekit-plain")
                        except OSError as exc:
                            self.fail(exc)
                            continue
                    ifid = self.plain
                event = (proto, (src[:alen], sport), (dst[:alen], dport), seq, ack, flags,
                         payload, ts, bool(ack_after))
                segs = segments(event, self.ident, self.cache)  # type: ignore[arg-type]
                self.ident += len(segs)
                hi, lo = (ts >> 32) & 0xFFFFFFFF, ts & 0xFFFFFFFF
                for head, piece in segs:
                    n = len(head) + len(piece)
                    pad = -n & 3
                    blen = 32 + n + pad
                    if piece:
                        bufs.append(pack(BLOCK_EPB, blen, ifid, hi, lo, n, n) + head)
                        bufs.append(piece)
                        bufs.append(_ZEROS[pad] + tail(blen))
                    else:
                        bufs.append(b"".join((pack(BLOCK_EPB, blen, ifid, hi, lo, n, n), head,
                                              _ZEROS[pad], tail(blen))))
                    nbytes += blen
                frames += len(segs)
            self.flush(bufs, frames)
            self.publish()


class RingCorrupt(Exception):
    """A record header that cannot be (the relay and the writer disagree about the ring)."""


def main(argv: list[str] | None = None) -> None:
    """``FILE_FD SHM_FD WAKE_FD STATUS_FD CAPACITY``: run until the wake pipe closes."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(NICE)
    file_fd, shm_fd, wake_fd, status_fd, capacity = (int(a) for a in (argv or sys.argv[1:]))
    try:
        _run(file_fd, shm_fd, wake_fd, status_fd, capacity)
    except Exception as exc:  # a bug: say it where the recorder reports errors
        with contextlib.suppress(OSError):
            os.write(status_fd, f"error 0 the writer process failed: {exc!r}\n".encode())
        raise SystemExit(1) from None


def _run(file_fd: int, shm_fd: int, wake_fd: int, status_fd: int, capacity: int) -> None:
    mm = mmap.mmap(shm_fd, CONTROL + capacity + RECORD.size)
    os.close(shm_fd)
    w = _Writer(file_fd, mm, capacity, status_fd)
    eof = False
    while True:
        (wpos,) = POSITION.unpack_from(mm, 0)
        if w.rpos != wpos:
            w.drain(wpos)
            continue
        if eof:
            break
        mm[SLEEPING] = 1  # the relay writes a wake byte once it sees this
        (wpos,) = POSITION.unpack_from(mm, 0)
        if wpos == w.rpos:
            # The timeout covers a wake byte lost to the race between the two processes.
            ready, _, _ = select.select([wake_fd], [], [], 0.2)
            if ready and not os.read(wake_fd, 65536):
                eof = True  # the relay process closed its end (or died): drain, then exit
        mm[SLEEPING] = 0
    w.publish()
    w.say("done")
