"""``Recorder``: relay taps from many connections written to one pcapng file.

Theory of operation
-------------------
::

    relay process (event loop, taps)              writer process (capture/record_writer.py)
    ------------------------------------------    ------------------------------------------
    TcpLeg/UdpLeg: seq/ack bookkeeping   --->     shared-memory ring  --->  flows.segments()
    offer(event): copy it into the ring, or       (records)                 os.writev: whole
    count the event's packets as dropped                                    blocks, flushed

Frames are built and written in a separate process, not a thread: computing checksums over
every payload byte would otherwise hold the interpreter lock the event loop needs, and the
relay would run at the writer's pace.  The relay's side is one ``struct.pack_into`` and one
copy of the payload per event (the second leg of a forward carries the same bytes object
as the first: it is not copied again).  See :mod:`wirekit.capture.record_writer` for the
ring's layout and the writer's lifetime.

The loop side never blocks: when the ring is full (more than ``queue_size`` events or
``max_bytes`` of payload waiting), the event is dropped and its packets counted in
:attr:`dropped`; sequence numbers still advance, so the file shows the gap the way a
capture tool shows lost packets.  Every batch is written whole (``writev`` on the file,
no buffering), so a killed process leaves a file that reads up to its last complete block;
if the relay process is killed, the writer still drains what was queued, then exits (its
wake pipe reads end-of-file).  A write error (disk full, EIO) stops the recording: one line
through ``on_error`` (from a small thread that waits on the writer's status pipe), later
events are ignored, and the relay carries on.

Interfaces: everything is on interface 0, named ``wirekit``, as Ethernet frames: both legs
of a forward (client <-> wirekit's listener, and wirekit's outgoing socket <-> the target),
exactly the two connections ``tshark -i lo`` would list for a forward on loopback.  Where
wirekit terminates or originates TLS, the TLS leg (ciphertext) stays on interface 0 and the
plaintext leg goes to interface 1, ``wirekit-plain``, added the first time it is needed
(legs made with ``tcp(..., plain=True)``).  TLS keys (:meth:`Recorder.secrets`) go in the
ring like events and become a Decryption Secrets Block ahead of the packets they decrypt.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import struct
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable
from typing import IO, Any

import wirekit
from wirekit.capture.flows import Event, TcpLeg, UdpLeg, mss_of
from wirekit.capture.record_writer import (
    CONTROL,
    COUNTERS,
    EVENT,
    POSITION,
    RECORD,
    SAME,
    SECRETS,
    SLEEPING,
    WRAP,
)
from wirekit.errors import UsageError
from wirekit.pcapng.blocks import LINKTYPE_ETHERNET
from wirekit.pcapng.writer import PcapngWriter

__all__ = ["DEFAULT_QUEUE", "Recorder"]

DEFAULT_QUEUE = 8192  # events (one relay chunk each)
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # payload waiting to be written
_WRAP = struct.Struct("<IB")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(wirekit.__file__)))
_START = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
          "from wirekit.capture.record_writer import main; main()")


def _shared(size: int) -> int:
    """A descriptor of ``size`` bytes of memory the writer process can map."""
    try:
        fd = os.memfd_create("wirekit-recorder")
    except (AttributeError, OSError):  # not Linux, or memfd refused (a sandbox)
        with tempfile.NamedTemporaryFile(prefix="wirekit-recorder-", delete=False) as f:
            fd = os.dup(f.fileno())
        os.unlink(f.name)
    try:
        os.ftruncate(fd, size)
    except OSError:
        os.close(fd)
        raise
    return fd


def _release(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _watch(ref: Callable[[], Recorder | None], fd: int) -> None:
    """The status pipe: one ``error ERRNO TEXT`` line at most, ``done`` at the end."""
    buf, done = b"", False
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            rec = ref()
            if line.startswith(b"error ") and rec is not None:
                _, code, text = line.decode(errors="replace").split(" ", 2)
                rec._fail(int(code), text)
            done = done or line == b"done"
            del rec
    rec = ref()
    if not done and rec is not None and rec.error is None:
        rec._fail(0, "the writer process ended")


class Recorder:
    """Write recorded connections to ``path`` (pcapng) from a writer process.

    Use :meth:`tcp` / :meth:`udp` for a leg, feed it from taps; :meth:`forward_hooks`
    builds the tap factory and event hook of :func:`wirekit.forward`
    (see :mod:`wirekit.capture.relay_tap`).
    ``close()`` writes what is queued, closes the file and ends the writer process.
    """

    def __init__(self, path: str | os.PathLike[str], *, queue_size: int = DEFAULT_QUEUE,
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.path = os.fspath(path)
        try:
            # 0600, like dumpcap's files: a recording may hold TLS keys and plaintext.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                         0o600)
            self._file: IO[bytes] = os.fdopen(fd, "wb")  # closed in close()
        except OSError as exc:
            raise UsageError(f"cannot record to {self.path}: {exc.strerror or exc}") from exc
        try:
            writer = PcapngWriter(self._file)
            writer.add_interface(LINKTYPE_ETHERNET, name="wirekit")  # the writer resumes
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._file.close()
            raise UsageError(f"cannot record to {self.path}: {exc.strerror or exc}") from exc
        self.on_error = on_error
        self.max_bytes = max_bytes
        self.dropped = 0  # packets (events) not written because the ring was full
        self.dropped_events = 0
        self.error: str | None = None
        self._closed = False
        self._done = threading.Event()  # set when close() has finished (for other callers)
        self._final = (0, 0, 0, 0)  # the writer's counters once it has exited
        self._queue_size = max(1, queue_size)
        self._queued = 0  # events in the ring, ever
        self._queued_bytes = 0  # payload copied into the ring, ever
        self._wpos = 0
        self._last: bytes | None = None  # the payload of the last EVENT record
        self._isn = 1000
        self._lock = threading.Lock()  # offer() against close() from another thread
        size = max_bytes + (self._queue_size + 2) * RECORD.size
        self._capacity = (size + 7) & ~7
        try:
            self._start()
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._file.close()
            raise UsageError(f"cannot record to {self.path}: cannot start the writer "
                             f"process: {exc.strerror or exc}") from exc

    def _start(self) -> None:
        theirs: list[int] = []  # the writer's descriptors: closed here once it has them
        mine: list[int] = []
        try:
            shm = _shared(CONTROL + self._capacity + RECORD.size)
            theirs.append(shm)
            wake_r, wake_w = os.pipe()
            theirs.append(wake_r)
            mine.append(wake_w)
            status_r, status_w = os.pipe()
            theirs.append(status_w)
            mine.append(status_r)
            self._mm = mmap.mmap(shm, CONTROL + self._capacity + RECORD.size)
            os.set_blocking(wake_w, False)
            fds = (self._file.fileno(), shm, wake_r, status_w)
            # -P and cwd "/": no module of the caller's directory shadows the stdlib in the
            # writer; its own session: a terminal's Ctrl-C, meant for the relay process,
            # cannot stop it before it has set its signals (the wake pipe still ends it).
            self._proc = subprocess.Popen(
                [sys.executable, "-P", "-c", _START, _ROOT, *map(str, fds),
                 str(self._capacity)],
                pass_fds=fds, cwd="/", start_new_session=True, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)  # its errors come through the status pipe
        except BaseException:
            for fd in mine:
                _release(fd)
            if hasattr(self, "_mm"):
                self._mm.close()
            raise
        finally:
            for fd in theirs:
                _release(fd)
        self._wake = wake_w
        self._status = status_r
        # A recorder dropped without close(): its pipe closes, so the writer finishes.
        self._finalizer = weakref.finalize(self, _release, wake_w)
        self._watcher = threading.Thread(target=_watch, args=(weakref.ref(self), status_r),
                                         name="wirekit-recorder", daemon=True)
        self._watcher.start()

    # -- loop side --------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.error is None and not self._closed

    @property
    def packets(self) -> int:
        """Packets written so far (the writer's count)."""
        return self._counters()[1]

    def _counters(self) -> tuple[int, int, int, int]:
        """The writer's read position, packets, events and payload bytes done."""
        if self._closed and self._mm.closed:
            return self._final
        try:
            return COUNTERS.unpack_from(self._mm, 8)
        except ValueError:  # closed meanwhile
            return self._final

    def offer(self, event: Event, iface: int = 0) -> None:
        """Queue one event for writing; never blocks (a full ring counts a drop)."""
        if self.error is not None or self._closed:
            return
        proto, src, dst, seq, ack, flags, payload, ts, ack_after = event
        size = len(payload)
        with self._lock:
            if self._closed:
                return
            mm = self._mm
            rpos, _, events, done = COUNTERS.unpack_from(mm, 8)
            if self._queued - events >= self._queue_size:
                self._drop(event)
                return
            kind = EVENT if proto else SECRETS
            body = size
            if size and kind == EVENT and payload is self._last:
                kind, body = SAME, 0  # the other leg's bytes, already in the ring
            elif size and self._queued_bytes - done + size > self.max_bytes:
                self._drop(event)
                return
            need = (RECORD.size + body + 7) & ~7
            pos, cap = self._wpos, self._capacity
            room = cap - pos % cap
            skip = room if room < RECORD.size else 0  # a header never wraps; a payload may
            if pos + skip + need - rpos > cap:
                self._drop(event)
                return
            if skip:
                _WRAP.pack_into(mm, CONTROL + pos % cap, room, WRAP)
                pos += room
            off = pos % cap
            RECORD.pack_into(mm, CONTROL + off, need, kind, iface, proto, flags, ack_after,
                             len(src[0]), src[1], dst[1], seq, ack, ts, body, src[0], dst[0])
            if body:
                off += RECORD.size
                first = min(body, cap - off)
                if first == body:
                    mm[CONTROL + off : CONTROL + off + body] = payload
                else:  # around the end of the ring
                    view = memoryview(payload)
                    mm[CONTROL + off : CONTROL + cap] = view[:first]
                    mm[CONTROL : CONTROL + body - first] = view[first:]
                self._queued_bytes += body
                if kind == EVENT:
                    self._last = payload
            self._wpos = pos = pos + need
            POSITION.pack_into(mm, 0, pos)  # published after the record is complete
            self._queued += 1
            if mm[SLEEPING]:
                mm[SLEEPING] = 0
                with contextlib.suppress(OSError):  # a full pipe: the writer is awake
                    os.write(self._wake, b"\0")

    def secrets(self, keylog: bytes) -> None:
        """Queue NSS key-log lines, written as a Decryption Secrets Block in order."""
        self.offer((0, (b"", 0), (b"", 0), 0, 0, 0, keylog, 0, False))

    def _drop(self, event: Event) -> None:
        if event[0] and event[6]:
            self._last = None  # the other leg's copy of these bytes carries them itself
        self.dropped_events += 1
        n = len(event[6])
        if event[0] == 6:
            self.dropped += max(1, -(-n // mss_of(event[1][0]))) + (1 if event[8] else 0)
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

    # -- the writer's reports and lifecycle ----------------------------------------------
    def _fail(self, code: int, reason: str) -> None:
        name = errno.errorcode.get(code, "")
        self.error = (f"recording to {self.path} stopped: {reason}"
                      + (f" ({name})" if name else "")
                      + f" after {self.packets} packets; the connections carry on")
        if self.on_error is not None:
            with contextlib.suppress(Exception):
                self.on_error(self.error)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then close the file and end the writer (idempotent; a
        second caller waits for the first one's close to finish)."""
        with self._lock:
            closing = self._closed
            self._closed = True
        if closing:
            self._done.wait(timeout)
            return
        try:
            self._finalizer()  # the wake pipe's end-of-file: the writer drains, then exits
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._watcher.join(timeout)
            self._final = self._counters()
            self._mm.close()
            _release(self._status)
            with contextlib.suppress(OSError):
                self._file.close()
        finally:
            self._done.set()

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

