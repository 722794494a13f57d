"""Live capture: an AF_PACKET socket with a kernel BPF filter, written to pcapng.

Theory of operation
-------------------
The socket is created with protocol 0, which receives nothing, so the filter and the
4 MiB TPACKET_V3 receive ring (``wirekit.capture.ring``) are in place before ``bind`` to
``ETH_P_ALL`` starts the flow: no packet slips in unfiltered.  The BPF program
(``wirekit.capture.bpf``) runs in the kernel; on a loopback interface it also rejects
``PACKET_OUTGOING``, the copy of each packet taken as it leaves (the same packet passes the
tap again as it arrives; the ring's per-packet ``sll_pkttype`` is checked again here).  The
filter's accept value is the snap length, so the kernel truncates; each ring entry carries
the original length and the kernel's receive time in nanoseconds.

The loop waits in ``poll`` (at most 0.1 s, so a stop request, ``--duration`` or a signal
is noticed promptly), then reads the blocks the kernel has handed over, and appends their
Enhanced Packet Blocks to the file with one ``write`` of whole blocks: a process killed at
any moment leaves a file that reads cleanly up to its last block.  At the end
``PACKET_STATISTICS`` gives the kernel's counts (packets that passed the filter, and those
dropped because the ring was full), as tcpdump reports them.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wirekit.capture import bpf
from wirekit.capture.ring import Ring
from wirekit.errors import NetError, UsageError
from wirekit.pcapng.blocks import LINKTYPE_ETHERNET
from wirekit.pcapng.writer import PcapngWriter

__all__ = ["CaptureConfig", "CaptureStats", "CapturedPacket", "Sniffer", "capture",
           "interface_linktype"]

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
ARPHRD_LOOPBACK = 772
LINKTYPE_RAW = 101
# ARPHRD -> pcapng link type for what a SOCK_RAW packet socket returns on that device.
_LINKTYPES = {1: LINKTYPE_ETHERNET, ARPHRD_LOOPBACK: LINKTYPE_ETHERNET,
              65534: LINKTYPE_RAW, 768: LINKTYPE_RAW, 776: LINKTYPE_RAW, 778: LINKTYPE_RAW}
_STATS = struct.Struct("=II")  # struct tpacket_stats
_POLL_MS = 100


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    path: Path
    interface: str = "lo"
    filter: str = ""
    count: int | None = None  # stop after this many packets
    duration: float | None = None  # stop after this many seconds
    snaplen: int = 262144
    buffer_size: int = 4 << 20


@dataclass(frozen=True, slots=True)
class CapturedPacket:
    number: int  # 1-based, as written to the file
    timestamp_ns: int
    data: bytes  # at most snaplen bytes
    original_length: int


@dataclass(frozen=True, slots=True)
class CaptureStats:
    interface: str
    linktype: int
    filter: str
    path: Path
    packets: int  # written to the file
    kernel_received: int  # passed the kernel filter (including those dropped)
    kernel_dropped: int  # dropped by the kernel: the receive buffer was full
    buffer_size: int  # bytes of the receive ring
    duration: float  # seconds

    def as_json(self) -> dict[str, object]:
        return {"interface": self.interface, "linktype": self.linktype, "filter": self.filter,
                "file": str(self.path), "packets": self.packets,
                "kernel": {"received": self.kernel_received, "dropped": self.kernel_dropped},
                "buffer_size": self.buffer_size, "duration": round(self.duration, 6)}


def interface_linktype(interface: str) -> tuple[int, int, bool]:
    """``(ifindex, pcapng link type, is loopback)`` of a network interface; ``UsageError``
    if there is no such interface."""
    try:
        index = socket.if_nametoindex(interface)
    except OSError:
        names = ", ".join(name for _, name in socket.if_nameindex())
        raise UsageError(f"no such interface {interface!r} (available: {names})") from None
    try:
        arphrd = int(Path(f"/sys/class/net/{interface}/type").read_text())
    except (OSError, ValueError):
        arphrd = 1
    linktype = _LINKTYPES.get(arphrd)
    if linktype is None:
        raise UsageError(f"capturing on {interface} (ARPHRD {arphrd}) is not supported: "
                         "only Ethernet, loopback and raw-IP devices")
    return index, linktype, arphrd == ARPHRD_LOOPBACK


def _permission_message(interface: str) -> str:
    exe = os.path.realpath(sys.executable)
    return (f"capturing on {interface} needs CAP_NET_RAW: run as root (sudo), or grant it "
            f"to this interpreter with: sudo setcap cap_net_raw+ep {exe}")


class Sniffer:
    """An open, filtered packet socket on one interface."""

    def __init__(self, interface: str = "lo", filter: str = "", *, snaplen: int = 262144,
                 buffer_size: int = 4 << 20) -> None:
        if not 1 <= snaplen <= 262144:
            raise UsageError(f"--snaplen must be 1..262144, not {snaplen}")
        _, self.linktype, self.loopback = interface_linktype(interface)
        self.interface = interface
        self.snaplen = snaplen
        self.filter = filter
        try:
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError as exc:
            raise NetError(_permission_message(interface)) from exc
        try:
            # Compiled after the permission check: the tcpdump fallback needs it too.
            program = bpf.compile_filter(filter, linktype=self.linktype, snaplen=snaplen,
                                         iface=interface)
            if self.loopback:
                program = bpf.reject_outgoing(program)
            self._setup(bpf.pack_program(program), len(program), buffer_size)
        except BaseException:
            self.sock.close()
            raise
        self._received = 0
        self._dropped = 0

    def _setup(self, code: bytes, length: int, buffer_size: int) -> None:
        import ctypes

        sock = self.sock
        holder = ctypes.create_string_buffer(code, len(code))
        fprog = struct.pack("@HP", length, ctypes.addressof(holder))
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            self.ring = Ring(sock, size=buffer_size)
            sock.bind((self.interface, ETH_P_ALL))
        except OSError as exc:
            raise NetError(f"cannot capture on {self.interface}: {exc.strerror}") from exc
        sock.setblocking(False)

    @property
    def buffer_size(self) -> int:
        """Bytes of the receive ring (packets wait here; full means kernel drops)."""
        return self.ring.size

    def kernel_stats(self) -> tuple[int, int]:
        """``(received, dropped)`` since the socket opened (the kernel resets on read, so
        the counts are accumulated here)."""
        packets, drops = _STATS.unpack(
            self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size))
        self._received += packets
        self._dropped += drops
        return self._received, self._dropped

    def close(self) -> None:
        ring = getattr(self, "ring", None)
        if ring is not None:
            ring.close()
        self.sock.close()

    def __enter__(self) -> Sniffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Pending:
    """The writer's file: collects whole blocks until they are written together."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def capture(config: CaptureConfig, *, on_packet: Callable[[CapturedPacket], None] | None = None,
            should_stop: Callable[[], bool] = lambda: False,
            on_ready: Callable[[Sniffer], None] | None = None) -> CaptureStats:
    """Capture until ``count`` packets, ``duration`` seconds, or ``should_stop()``."""
    if config.count is not None and config.count < 1:
        raise UsageError(f"-c must be a positive number of packets, not {config.count}")
    if config.duration is not None and not config.duration > 0:
        raise UsageError(f"--duration must be positive, not {config.duration}")
    with Sniffer(config.interface, config.filter, snaplen=config.snaplen,
                 buffer_size=config.buffer_size) as sniffer:
        try:
            fd = os.open(config.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise NetError(f"cannot write {config.path}: {exc.strerror}") from exc
        try:
            return _loop(sniffer, fd, config, on_packet, should_stop, on_ready)
        finally:
            os.close(fd)


def _loop(sniffer: Sniffer, fd: int, config: CaptureConfig,
          on_packet: Callable[[CapturedPacket], None] | None,
          should_stop: Callable[[], bool],
          on_ready: Callable[[Sniffer], None] | None) -> CaptureStats:
    pending = _Pending()
    writer = PcapngWriter(pending, flush=False)  # type: ignore[arg-type]
    writer.add_interface(sniffer.linktype, snaplen=config.snaplen, name=sniffer.interface)
    try:
        _write_all(fd, pending.take())
    except OSError as exc:
        raise NetError(f"cannot write {config.path}: {exc.strerror}") from exc
    start = time.monotonic()
    if on_ready is not None:
        on_ready(sniffer)
    try:
        written = _drain(sniffer, fd, config, pending, writer, on_packet, should_stop)
    finally:
        if pending.parts:  # a stop by exception: what was received still reaches the file
            _write_all(fd, pending.take())
    received, dropped = sniffer.kernel_stats()
    return CaptureStats(sniffer.interface, sniffer.linktype, config.filter, config.path,
                        written, received, dropped, sniffer.buffer_size,
                        time.monotonic() - start)


def _drain(sniffer: Sniffer, fd: int, config: CaptureConfig, pending: _Pending,
           writer: PcapngWriter, on_packet: Callable[[CapturedPacket], None] | None,
           should_stop: Callable[[], bool]) -> int:
    write_packets = writer.write_packets
    ring = sniffer.ring
    m = ring.map
    poller = select.poll()
    poller.register(sniffer.sock, select.POLLIN)
    loopback = sniffer.loopback
    limit = config.count or 0
    written = 0
    deadline = None if config.duration is None else time.monotonic() + config.duration
    while not (limit and written >= limit) and not should_stop():
        if not ring.ready():
            timeout = _POLL_MS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                timeout = min(timeout, max(1, int(left * 1000)))
            poller.poll(timeout)
            continue
        if deadline is not None and time.monotonic() >= deadline:
            break
        batch: list[tuple[bytes, int, int]] = []
        append = batch.append
        for ts, off, caplen, orig, pkttype in ring.packets():
            if loopback and pkttype == PACKET_OUTGOING:
                continue
            frame = m[off:off + caplen]
            append((frame, ts, orig))
            if on_packet is not None:
                on_packet(CapturedPacket(written + len(batch), ts, frame, orig))
            if limit and written + len(batch) >= limit:
                break
        written += write_packets(0, batch)
        if pending.parts:
            try:
                _write_all(fd, pending.take())
            except OSError as exc:
                raise NetError(f"cannot write {config.path}: {exc.strerror}") from exc
    return written
