"""Writing pcapng: SHB, IDB (with options), EPB (with timestamps), DSB.

Each block is written whole with one ``write`` and, by default, flushed, so a process killed
mid-recording leaves a file that reads cleanly up to its last block.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import IO

from wirekit.pcapng.blocks import (
    BLOCK_DSB,
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_SHB,
    BYTE_ORDER_MAGIC,
    LINKTYPE_ETHERNET,
    OPT_COMMENT,
    OPT_IF_NAME,
    OPT_IF_TSRESOL,
    SECRETS_TLS_KEY_LOG,
)

__all__ = ["PcapngWriter", "encode_options"]


def _pad(n: int) -> int:
    return (4 - n % 4) % 4


def encode_options(options: list[tuple[int, bytes]] | tuple[tuple[int, bytes], ...],
                   bo: str = "<") -> bytes:
    """Options in pcapng TLV form, with the end-of-options marker (empty if none)."""
    if not options:
        return b""
    parts = []
    for code, value in options:
        if len(value) > 0xFFFF:
            raise ValueError(f"option {code} value too long ({len(value)} bytes)")
        parts.append(struct.pack(bo + "HH", code, len(value)) + value + b"\0" * _pad(len(value)))
    parts.append(b"\0\0\0\0")
    return b"".join(parts)


class PcapngWriter:
    """Write one pcapng section to ``fileobj``.

    ``tsresol`` of each interface is a power of ten (``9`` = nanoseconds, the default), so
    ``timestamp_ns`` round-trips exactly.  ``resume=N``: the Section Header and ``N``
    nanosecond interfaces are already in the file (another writer, in another process,
    began the section): no header is written, interface ids continue after them.
    """

    def __init__(self, fileobj: IO[bytes], *, byte_order: str = "<", flush: bool = True,
                 application: str | None = "wirekit",
                 options: tuple[tuple[int, bytes], ...] = (), resume: int | None = None,
                 ) -> None:
        if byte_order not in "<>" or len(byte_order) != 1:
            raise ValueError("byte_order must be '<' or '>'")
        self._f = fileobj
        self._bo = byte_order
        self._flush = flush
        self._ifaces: list[int] = []  # tsresol exponent per interface
        self._epb = struct.Struct(byte_order + "IIIIIII")
        if resume is not None:
            self._ifaces = [9] * resume
            return
        opts = list(options)
        if application:
            opts.append((4, application.encode()))  # shb_userappl
        body = struct.pack(byte_order + "IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)
        self._block(BLOCK_SHB, body + encode_options(opts, byte_order))

    def _block(self, btype: int, body: bytes) -> None:
        blen = 12 + len(body)
        head = struct.pack(self._bo + "II", btype, blen)
        self._f.write(head + body + struct.pack(self._bo + "I", blen))
        if self._flush:
            self._f.flush()

    def add_interface(self, linktype: int = LINKTYPE_ETHERNET, *, snaplen: int = 0,
                      name: str | None = None, tsresol: int = 9,
                      options: tuple[tuple[int, bytes], ...] = ()) -> int:
        """Write an Interface Description Block; returns the interface id."""
        if not 0 <= tsresol <= 18:
            raise ValueError("tsresol must be a power-of-ten exponent 0..18")
        opts = list(options)
        if name is not None:
            opts.insert(0, (OPT_IF_NAME, name.encode()))
        opts.append((OPT_IF_TSRESOL, bytes([tsresol])))
        body = struct.pack(self._bo + "HHI", linktype, 0, snaplen)
        self._block(BLOCK_IDB, body + encode_options(opts, self._bo))
        self._ifaces.append(tsresol)
        return len(self._ifaces) - 1

    def write_packet(self, interface: int, data: bytes, timestamp_ns: int, *,
                     original_length: int | None = None, comment: str | None = None) -> None:
        """Write an Enhanced Packet Block."""
        if not 0 <= interface < len(self._ifaces):
            raise ValueError(f"interface {interface} was not added")
        exp = self._ifaces[interface]
        ticks = timestamp_ns if exp == 9 else timestamp_ns * 10**exp // 1_000_000_000
        n = len(data)
        opts = encode_options([(OPT_COMMENT, comment.encode())], self._bo) if comment else b""
        blen = 32 + n + _pad(n) + len(opts)
        orig = n if original_length is None else original_length
        self._f.write(b"".join((
            self._epb.pack(BLOCK_EPB, blen, interface, (ticks >> 32) & 0xFFFFFFFF,
                           ticks & 0xFFFFFFFF, n, orig),
            data, b"\0" * _pad(n), opts, struct.pack(self._bo + "I", blen))))
        if self._flush:
            self._f.flush()

    def write_packets(self, interface: int,
                      packets: Iterable[tuple[bytes, int, int]]) -> int:
        """Enhanced Packet Blocks for many ``(data, timestamp_ns, original_length)`` at once,
        written with one ``write`` (so only whole blocks reach the file); returns how many.
        The fast path of live capture: about half the cost of ``write_packet`` per packet."""
        if not 0 <= interface < len(self._ifaces):
            raise ValueError(f"interface {interface} was not added")
        exp = self._ifaces[interface]
        scale = 10**exp
        pack = self._epb.pack
        tail = struct.Struct(self._bo + "I").pack
        zeros = (b"", b"\0", b"\0\0", b"\0\0\0")
        parts: list[bytes] = []
        append = parts.append
        for data, ts, orig in packets:
            ticks = ts if exp == 9 else ts * scale // 1_000_000_000
            n = len(data)
            pad = -n & 3
            blen = 32 + n + pad
            append(pack(BLOCK_EPB, blen, interface, (ticks >> 32) & 0xFFFFFFFF,
                        ticks & 0xFFFFFFFF, n, orig))
            append(data)
            append(zeros[pad] + tail(blen))
        if parts:
            self._f.write(b"".join(parts))
            if self._flush:
                self._f.flush()
        return len(parts) // 3

    def write_secrets(self, data: bytes, secrets_type: int = SECRETS_TLS_KEY_LOG) -> None:
        """Write a Decryption Secrets Block (by default an NSS TLS key log)."""
        body = struct.pack(self._bo + "II", secrets_type, len(data)) + data + b"\0" * _pad(
            len(data))
        self._block(BLOCK_DSB, body)

    def flush(self) -> None:
        self._f.flush()
