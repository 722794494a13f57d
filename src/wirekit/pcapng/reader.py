"""Reading pcapng and classic pcap.

Theory of operation
-------------------
One decoder, ``Decoder.step(buf, off)``, turns the block (or pcap record) starting at ``off`` in
a buffer into an event and the offset of the next one.  It returns ``None`` when the buffer
ends inside the block: "need more".  It never slices more than the buffer holds, so a length
field cannot make it allocate more than the input contains; a length that is impossible in
itself (not a multiple of 4, smaller than the fixed part, an interface that does not exist)
raises ``ParseError`` with the absolute offset of the block.

Three drivers share it:

* ``CaptureParser`` -- sans-IO: ``feed(bytes)``, ``events()``, ``close()`` (which raises
  ``ParseError`` if the input stopped inside a block).
* ``read(fileobj)`` -- events from a file object; a real file is mmapped (captures larger
  than memory stream through the page cache), anything else is read in chunks.
* ``Decoder.raw_packets(buf)`` -- the fast path: plain tuples
  ``(timestamp_ns, linktype, data_offset, caplen, original_length)`` with no per-packet
  object; other blocks are collected on ``decoder.events`` as they pass.

Every complete block before the damage is yielded first; then the error is raised.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from typing import IO, Any

from wirekit.errors import ParseError
from wirekit.pcapng.blocks import (
    BLOCK_DSB,
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_SHB,
    BLOCK_SPB,
    OPT_IF_TSOFFSET,
    OPT_IF_TSRESOL,
    Block,
    DecryptionSecrets,
    Interface,
    Options,
    Packet,
    SectionHeader,
)

__all__ = ["CaptureParser", "Decoder", "Event", "open_buffer", "read"]

Event = SectionHeader | Interface | Packet | DecryptionSecrets | Block
Buffer = Any  # bytes, bytearray, memoryview or mmap: anything struct.unpack_from accepts

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
_SHB_MAGIC = b"\x0a\x0d\x0d\x0a"
# A generous ceiling for one pcap record; larger is corruption, not a frame.
_MAX_RECORD = 0x1000000

_S = {
    bo: {
        "II": struct.Struct(bo + "II"),
        "I": struct.Struct(bo + "I"),
        "HH": struct.Struct(bo + "HH"),
        "HHI": struct.Struct(bo + "HHI"),
        "HHq": struct.Struct(bo + "HHq"),
        "epb": struct.Struct(bo + "IIIIIII"),  # type, len, iface, ts_hi, ts_lo, caplen, orig
        "rec": struct.Struct(bo + "IIII"),
        "pcap": struct.Struct(bo + "HHiIII"),
        "q": struct.Struct(bo + "q"),
    }
    for bo in "<>"
}


def _ticks_per_second(raw: int) -> int:
    return (1 << (raw & 0x7F)) if raw & 0x80 else 10 ** (raw & 0x7F)


class Decoder:
    """State shared across blocks: byte order, interfaces, and the file format."""

    def __init__(self) -> None:
        self.format: str | None = None  # "pcapng" or "pcap"
        self.bo = "<"
        self.interfaces: list[Interface] = []
        self.events: list[Event] = []  # non-packet events collected by raw_packets()
        self._pcap_mult = 1_000  # pcap fraction -> ns
        self._pcap_linktype = 0
        self._pcap_snaplen = 0

    # -- the one decoding step ------------------------------------------------------------

    def step(self, buf: Buffer, off: int, base: int = 0) -> tuple[Event, int] | None:
        """Decode the block at ``buf[off:]``; ``base + off`` is its offset in the file."""
        end = len(buf)
        if self.format is None:
            return self._header(buf, off, end, base)
        if self.format == "pcap":
            return self._pcap_record(buf, off, end, base)
        if end - off < 12:
            return None
        s = _S[self.bo]
        btype, blen = s["II"].unpack_from(buf, off)
        if btype == BLOCK_SHB:
            return self._header(buf, off, end, base)
        if blen < 12 or blen % 4:
            raise ParseError(f"block of type 0x{btype:08x} has invalid length {blen}",
                             offset=base + off)
        if end - off < blen:
            return None
        (trailer,) = s["I"].unpack_from(buf, off + blen - 4)
        if trailer != blen:
            raise ParseError(f"block length {blen} does not match trailing length {trailer}",
                             offset=base + off)
        body = off + 8
        body_end = off + blen - 4
        at = base + off
        if btype == BLOCK_EPB:
            return self._epb(buf, body, body_end, at), off + blen
        if btype == BLOCK_IDB:
            if blen < 20:
                raise ParseError("interface description block too short", offset=at)
            linktype, _, snaplen = s["HHI"].unpack_from(buf, body)
            options = self._options(buf, body + 8, body_end, at)
            tsresol, tsoffset = 1_000_000, 0
            for code, value in options:
                if code == OPT_IF_TSRESOL and len(value) >= 1:
                    tsresol = _ticks_per_second(value[0])
                    if tsresol > 10**18:
                        raise ParseError("if_tsresol out of range", offset=at)
                elif code == OPT_IF_TSOFFSET and len(value) == 8:
                    (tsoffset,) = s["q"].unpack_from(value)
            iface = Interface(at, len(self.interfaces), linktype, snaplen, tsresol, tsoffset,
                              options)
            self.interfaces.append(iface)
            return iface, off + blen
        if btype == BLOCK_SPB:
            if blen < 16:
                raise ParseError("simple packet block too short", offset=at)
            if not self.interfaces:
                raise ParseError("simple packet block before any interface", offset=at)
            (orig,) = s["I"].unpack_from(buf, body)
            iface = self.interfaces[0]
            caplen = min(orig, body_end - body - 4)
            if iface.snaplen:
                caplen = min(caplen, iface.snaplen)
            data = bytes(buf[body + 4 : body + 4 + caplen])
            return Packet(at, 0, iface.linktype, 0, data, orig), off + blen
        if btype == BLOCK_DSB:
            if blen < 20:
                raise ParseError("decryption secrets block too short", offset=at)
            stype, slen = s["II"].unpack_from(buf, body)
            if slen > body_end - body - 8:
                raise ParseError(f"secrets length {slen} exceeds its block", offset=at)
            data = bytes(buf[body + 8 : body + 8 + slen])
            opt_at = body + 8 + ((slen + 3) & ~3)
            options = self._options(buf, opt_at, body_end, at)
            return DecryptionSecrets(at, stype, data, options), off + blen
        return Block(at, btype, bytes(buf[body:body_end])), off + blen

    # -- pieces ---------------------------------------------------------------------------

    def _header(self, buf: Buffer, off: int, end: int, base: int) -> tuple[Event, int] | None:
        if end - off < 4:
            return None
        magic = bytes(buf[off : off + 4])
        at = base + off
        if magic == _SHB_MAGIC:
            if end - off < 12:
                return None
            bom = bytes(buf[off + 8 : off + 12])
            if bom == b"\x4d\x3c\x2b\x1a":
                bo = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                bo = ">"
            else:
                raise ParseError("section header has no valid byte-order magic", offset=at)
            s = _S[bo]
            (blen,) = s["I"].unpack_from(buf, off + 4)
            if blen < 28 or blen % 4:
                raise ParseError(f"section header has invalid length {blen}", offset=at)
            if end - off < blen:
                return None
            (trailer,) = s["I"].unpack_from(buf, off + blen - 4)
            if trailer != blen:
                raise ParseError(f"block length {blen} does not match trailing length "
                                 f"{trailer}", offset=at)
            major, minor, section_length = s["HHq"].unpack_from(buf, off + 12)
            if major != 1:
                raise ParseError(f"unsupported pcapng version {major}.{minor}", offset=at)
            self.format, self.bo, self.interfaces = "pcapng", bo, []
            options = self._options(buf, off + 24, off + blen - 4, at)
            return SectionHeader(at, bo, (major, minor), section_length, options), off + blen
        if self.format is not None:
            raise ParseError("unexpected data where a block should start", offset=at)
        if magic not in _PCAP_MAGICS:
            raise ParseError("not a pcap or pcapng file (unknown magic "
                             f"{magic.hex()})", offset=at)
        if end - off < 24:
            return None
        bo, mult = _PCAP_MAGICS[magic]
        major, minor, _zone, _sigfigs, snaplen, network = _S[bo]["pcap"].unpack_from(buf, off + 4)
        self.format, self.bo, self._pcap_mult = "pcap", bo, mult
        self._pcap_linktype = network & 0xFFFF
        self._pcap_snaplen = snaplen
        self.interfaces = [Interface(at, 0, network & 0xFFFF, snaplen,
                                     1_000_000 if mult == 1_000 else 1_000_000_000)]
        return SectionHeader(at, bo, (major, minor), -1, (), pcap=True), off + 24

    def _pcap_record(self, buf: Buffer, off: int, end: int,
                     base: int) -> tuple[Event, int] | None:
        if end - off < 16:
            return None
        sec, frac, caplen, orig = _S[self.bo]["rec"].unpack_from(buf, off)
        if caplen > _MAX_RECORD:
            raise ParseError(f"pcap record claims {caplen} bytes", offset=base + off)
        if end - off - 16 < caplen:
            return None
        data = bytes(buf[off + 16 : off + 16 + caplen])
        ts = sec * 1_000_000_000 + frac * self._pcap_mult
        return Packet(base + off, 0, self._pcap_linktype, ts, data, orig), off + 16 + caplen

    def _epb(self, buf: Buffer, body: int, body_end: int, at: int) -> Packet:
        if body_end - body < 20:
            raise ParseError("enhanced packet block too short", offset=at)
        s = _S[self.bo]
        _, _, iface_id, hi, lo, caplen, orig = s["epb"].unpack_from(buf, body - 8)
        if caplen > body_end - body - 20:
            raise ParseError(f"captured length {caplen} exceeds its block", offset=at)
        iface = self._iface(iface_id, at)
        data = bytes(buf[body + 20 : body + 20 + caplen])
        options = self._options(buf, body + 20 + ((caplen + 3) & ~3), body_end, at)
        return Packet(at, iface_id, iface.linktype, self._ns(iface, (hi << 32) | lo), data,
                      orig, options)

    def _iface(self, iface_id: int, at: int) -> Interface:
        if iface_id >= len(self.interfaces):
            raise ParseError(f"packet refers to undefined interface {iface_id}", offset=at)
        return self.interfaces[iface_id]

    @staticmethod
    def _ns(iface: Interface, ticks: int) -> int:
        res = iface.tsresol
        if res == 1_000_000:
            ns = ticks * 1_000
        elif res == 1_000_000_000:
            ns = ticks
        else:
            ns = ticks * 1_000_000_000 // res
        return ns + iface.tsoffset * 1_000_000_000

    def _options(self, buf: Buffer, off: int, end: int, at: int) -> Options:
        out: list[tuple[int, bytes]] = []
        hh = _S[self.bo]["HH"]
        while end - off >= 4:
            code, length = hh.unpack_from(buf, off)
            if code == 0:
                break
            if length > end - off - 4:
                raise ParseError(f"option {code} length {length} exceeds its block", offset=at)
            out.append((code, bytes(buf[off + 4 : off + 4 + length])))
            off += 4 + ((length + 3) & ~3)
        return tuple(out)

    # -- the fast path --------------------------------------------------------------------

    def raw_packets(self, buf: Buffer, off: int = 0) -> Iterator[tuple[int, int, int, int, int]]:
        """``(timestamp_ns, linktype, data_offset, caplen, original_length)`` per packet.

        Enhanced Packet Blocks and pcap records are decoded inline; every other block goes
        through ``step`` and lands on ``self.events``.  Raises ``ParseError`` at the end if
        the buffer stops inside a block.
        """
        end = len(buf)
        step = self.step
        while off < end:
            if self.format == "pcapng":
                epb = _S[self.bo]["epb"].unpack_from
                ns = self._ns
                ifaces = self.interfaces
                nif = len(ifaces)
                # Per interface: link type and whole nanoseconds per tick (0: use _ns).
                fast = [(i.linktype, 1_000_000_000 // i.tsresol
                         if not i.tsoffset and not 1_000_000_000 % i.tsresol else 0)
                        for i in ifaces]
                # (As few integer operations per packet as possible: each makes an object.)
                last = end - 32
                while off <= last:
                    btype, blen, iface_id, hi, lo, caplen, orig = epb(buf, off)
                    nxt = off + blen
                    if (btype != BLOCK_EPB or caplen + 32 > blen or nxt > end or blen & 3
                            or iface_id >= nif):
                        break  # let step() produce the block or the precise error
                    lt, tick = fast[iface_id]
                    if tick:
                        yield ((hi << 32) | lo) * tick, lt, off + 28, caplen, orig
                    else:
                        yield ns(ifaces[iface_id], (hi << 32) | lo), lt, off + 28, caplen, orig
                    off = nxt
            elif self.format == "pcap":
                rec = _S[self.bo]["rec"].unpack_from
                mult, lt = self._pcap_mult, self._pcap_linktype
                while end - off >= 16:
                    sec, frac, caplen, orig = rec(buf, off)
                    if caplen > _MAX_RECORD or end - off - 16 < caplen:
                        break
                    yield sec * 1_000_000_000 + frac * mult, lt, off + 16, caplen, orig
                    off += 16 + caplen
            if off >= end:
                break
            result = step(buf, off)
            if result is None:
                raise ParseError("file ends inside a block (truncated capture)", offset=off)
            event, off = result
            if isinstance(event, Packet):
                # SPB, or an EPB the inline path left to step(): hand it out as a raw tuple.
                start = event.offset + (16 if self.format == "pcap" else 28 if
                                        _is_epb(buf, event.offset, self.bo) else 12)
                yield (event.timestamp_ns, event.linktype, start, len(event.data),
                       event.original_length)
            else:
                self.events.append(event)
        if self.format is None:
            raise ParseError("empty file: not a pcap or pcapng capture", offset=0)


def _is_epb(buf: Buffer, off: int, bo: str) -> bool:
    return bool(_S[bo]["I"].unpack_from(buf, off)[0] == BLOCK_EPB)


class CaptureParser:
    """Sans-IO reader: ``feed`` bytes in any pieces, take ``events()``, then ``close()``."""

    def __init__(self) -> None:
        self.decoder = Decoder()
        self._buf = bytearray()
        self._base = 0  # file offset of _buf[0]

    def feed(self, data: bytes) -> None:
        self._buf += data

    def events(self) -> Iterator[Event]:
        buf, off = self._buf, 0
        try:
            while True:
                result = self.decoder.step(buf, off, self._base)
                if result is None:
                    break
                event, off = result
                yield event
        finally:
            del buf[:off]
            self._base += off

    def close(self) -> None:
        """The input ended: raise ``ParseError`` if it ended inside a block."""
        if self._buf:
            raise ParseError("file ends inside a block (truncated capture)", offset=self._base)
        if self.decoder.format is None:
            raise ParseError("empty file: not a pcap or pcapng capture", offset=0)


def open_buffer(fileobj: IO[bytes]) -> Buffer:
    """An mmap of a real file (read-only), else the whole content as bytes."""
    try:
        fd = fileobj.fileno()
    except (AttributeError, OSError, ValueError):
        return fileobj.read()
    try:
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except (ValueError, OSError):  # empty file, pipe, ...
        return fileobj.read()


def read(fileobj: IO[bytes], chunk_size: int = 1 << 20) -> Iterator[Event]:
    """Every event of a capture file object, then ``ParseError`` if it is damaged."""
    parser = CaptureParser()
    try:
        fd = fileobj.fileno()
        buf: Buffer = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except (AttributeError, OSError, ValueError):
        buf = None
    if buf is not None:
        yield from _read_buffer(parser.decoder, buf)
        return
    while chunk := fileobj.read(chunk_size):
        parser.feed(chunk)
        yield from parser.events()
    parser.close()


def _read_buffer(decoder: Decoder, buf: Buffer) -> Iterator[Event]:
    off = 0
    end = len(buf)
    while off < end:
        result = decoder.step(buf, off)
        if result is None:
            raise ParseError("file ends inside a block (truncated capture)", offset=off)
        event, off = result
        yield event
    if decoder.format is None:
        raise ParseError("empty file: not a pcap or pcapng capture", offset=0)
