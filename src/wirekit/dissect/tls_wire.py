"""TLS wire layer: bounds-checked reading, records, and handshake-message reassembly.

A record is a 5-byte header (content type, version, length) and a fragment of at most
2^14 + 2048 bytes.  Handshake messages (1-byte type, 3-byte length, body) are carried in
handshake records: one message may span records and several may share one, so
``HandshakeReassembler`` buffers fragments and yields only complete messages.  Both
parsers return an empty list for "need more" and raise ``ParseError`` with the stream
offset of the damage; ``Reader`` turns every short read into a ParseError (never an
IndexError or struct.error).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from wirekit.dissect import tls_names as names
from wirekit.errors import ParseError

__all__ = [
    "ALERT",
    "APPLICATION_DATA",
    "CHANGE_CIPHER_SPEC",
    "HANDSHAKE",
    "HEARTBEAT",
    "HRR_RANDOM",
    "MAX_FRAGMENT",
    "MAX_HANDSHAKE",
    "HandshakeReassembler",
    "Reader",
    "Record",
    "RecordParser",
    "encode_handshake",
    "encode_record",
    "parse_record",
]

CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
HEARTBEAT = 24

#: Largest record fragment allowed on the wire (TLSCiphertext: 2^14 + 2048, RFC 5246 6.2.3).
MAX_FRAGMENT = 2**14 + 2048
#: Largest handshake message the reassembler buffers before calling the stream garbage.
MAX_HANDSHAKE = 2**18

#: ServerHello.random of a HelloRetryRequest (RFC 8446 4.1.3): SHA-256("HelloRetryRequest").
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

class Reader:
    """Bounds-checked reads over ``data``; errors name ``base + position``."""

    __slots__ = ("base", "data", "end", "pos", "what")

    def __init__(self, data: bytes, what: str, base: int = 0) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.base = base
        self.what = what

    def fail(self, message: str) -> ParseError:
        return ParseError(f"{self.what}: {message}", offset=self.base + self.pos)

    def need(self, n: int, field_name: str) -> None:
        if self.pos + n > self.end:
            raise self.fail(f"{field_name} needs {n} bytes, {self.end - self.pos} left")

    def u8(self, field_name: str) -> int:
        self.need(1, field_name)
        v = self.data[self.pos]
        self.pos += 1
        return v

    def u16(self, field_name: str) -> int:
        pos = self.pos
        if pos + 2 > self.end:
            self.need(2, field_name)
        data = self.data
        self.pos = pos + 2
        return (data[pos] << 8) | data[pos + 1]

    def u24(self, field_name: str) -> int:
        self.need(3, field_name)
        v = int.from_bytes(self.data[self.pos : self.pos + 3], "big")
        self.pos += 3
        return v

    def u32(self, field_name: str) -> int:
        self.need(4, field_name)
        v = int.from_bytes(self.data[self.pos : self.pos + 4], "big")
        self.pos += 4
        return v

    def raw(self, n: int, field_name: str) -> bytes:
        self.need(n, field_name)
        v = self.data[self.pos : self.pos + n]
        self.pos += n
        return v

    def vec(self, length_size: int, field_name: str, minimum: int = 0) -> bytes:
        """A length-prefixed opaque vector (``opaque x<minimum..2^(8*length_size)-1>``)."""
        n = int.from_bytes(self.raw(length_size, field_name + " length"), "big")
        if n < minimum:
            self.pos -= length_size
            raise self.fail(f"{field_name} shorter than {minimum} bytes")
        return self.raw(n, field_name)

    def sub(self, length_size: int, field_name: str, minimum: int = 0) -> Reader:
        start = self.base + self.pos + length_size
        return Reader(self.vec(length_size, field_name, minimum), self.what, start)

    def u16_list(self, length_size: int, field_name: str, minimum: int = 0) -> tuple[int, ...]:
        r = self.sub(length_size, field_name, minimum)
        if r.end % 2:
            raise r.fail(f"{field_name} has an odd length {r.end}")
        # Length checked just above, so unpack_from cannot raise struct.error.
        return struct.unpack_from(f">{r.end // 2}H", r.data)

    def left(self) -> int:
        return self.end - self.pos

    def rest(self) -> bytes:
        return self.raw(self.left(), "rest")

    def done(self) -> None:
        if self.pos != self.end:
            raise self.fail(f"{self.end - self.pos} unexpected trailing bytes")


# --------------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Record:
    """One TLS record.  ``offset`` is where its header starts in the stream fed so far."""

    content_type: int
    version: int
    fragment: bytes
    offset: int = 0

    @property
    def type_name(self) -> str:
        return names.CONTENT_TYPES.get(self.content_type, str(self.content_type))

    @property
    def version_name(self) -> str:
        return names.version_name(self.version)

    def encode(self) -> bytes:
        return encode_record(self.content_type, self.version, self.fragment)


def encode_record(content_type: int, version: int, fragment: bytes) -> bytes:
    """The bytes of one record (no fragmentation: ``fragment`` must fit in one)."""
    if len(fragment) > 0xFFFF:
        raise ValueError("record fragment longer than 65535 bytes")
    return bytes((content_type, version >> 8, version & 0xFF)) + len(fragment).to_bytes(
        2, "big"
    ) + fragment


def _check_header(data: bytes | bytearray, pos: int, base: int) -> int:
    """Validate the 5-byte record header at ``pos``; return the fragment length."""
    content_type = data[pos]
    if content_type not in names.CONTENT_TYPES:
        raise ParseError(f"not a TLS record: content type {content_type}", offset=base + pos)
    if data[pos + 1] != 3 or data[pos + 2] > 4:
        version = int.from_bytes(data[pos + 1 : pos + 3], "big")
        at = base + pos + (1 if data[pos + 1] != 3 else 2)
        raise ParseError(f"not a TLS record: version 0x{version:04x}", offset=at)
    length = int.from_bytes(data[pos + 3 : pos + 5], "big")
    if length > MAX_FRAGMENT:
        raise ParseError(
            f"TLS record length {length} exceeds {MAX_FRAGMENT}", offset=base + pos + 3
        )
    return length


def parse_record(data: bytes, offset: int = 0) -> tuple[Record, int] | None:
    """The record at ``data[offset:]`` and the offset after it, or None if incomplete."""
    if len(data) - offset < 5:
        if len(data) > offset:
            # Reject garbage early: the first bytes alone can show it is not TLS.
            _check_prefix(data[offset:], offset)
        return None
    length = _check_header(data, offset, 0)
    end = offset + 5 + length
    if len(data) < end:
        return None
    version = int.from_bytes(data[offset + 1 : offset + 3], "big")
    return Record(data[offset], version, bytes(data[offset + 5 : end]), offset), end


def _check_prefix(prefix: bytes, base: int) -> None:
    if prefix[0] not in names.CONTENT_TYPES:
        raise ParseError(f"not a TLS record: content type {prefix[0]}", offset=base)
    if len(prefix) > 1 and prefix[1] != 3:
        raise ParseError(f"not a TLS record: version major {prefix[1]}", offset=base + 1)
    if len(prefix) > 2 and prefix[2] > 4:
        raise ParseError(f"not a TLS record: version minor {prefix[2]}", offset=base + 2)


class RecordParser:
    """Incremental record parser for one direction: ``feed(bytes) -> list[Record]``.

    After a ParseError the parser is broken and keeps raising (a byte stream cannot be
    resynchronised reliably).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._consumed = 0  # stream offset of _buf[0]
        self._error: ParseError | None = None

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet returned in a record."""
        return self._consumed

    @property
    def pending(self) -> int:
        """Bytes buffered waiting for the rest of a record."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Record]:
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[Record] = []
        buf = self._buf
        pos = 0
        try:
            while True:
                avail = len(buf) - pos
                if avail < 5:
                    if avail:
                        _check_prefix(bytes(buf[pos:]), self._consumed + pos)
                    break
                length = _check_header(buf, pos, self._consumed)
                end = pos + 5 + length
                if end > len(buf):
                    break
                version = (buf[pos + 1] << 8) | buf[pos + 2]
                out.append(Record(buf[pos], version, bytes(buf[pos + 5 : end]),
                                  self._consumed + pos))
                pos = end
        except ParseError as exc:
            self._error = exc
            raise
        finally:
            del buf[:pos]
            self._consumed += pos
        return out


class HandshakeReassembler:
    """Handshake-record fragments in, complete ``(msg_type, body, offset)`` triples out.

    ``offset`` counts handshake-layer bytes (the concatenation of fragments).
    """

    def __init__(self, max_message: int = MAX_HANDSHAKE) -> None:
        self._buf = bytearray()
        self._consumed = 0
        self._max = max_message

    @property
    def pending(self) -> int:
        return len(self._buf)

    @property
    def fed(self) -> int:
        """Handshake-layer bytes fed so far."""
        return self._consumed + len(self._buf)

    def feed(self, fragment: bytes) -> list[tuple[int, bytes, int]]:
        self._buf += fragment
        buf = self._buf
        out: list[tuple[int, bytes, int]] = []
        pos = 0
        try:
            while len(buf) - pos >= 4:
                length = int.from_bytes(buf[pos + 1 : pos + 4], "big")
                if length > self._max:
                    raise ParseError(
                        f"handshake message length {length} exceeds {self._max}",
                        offset=self._consumed + pos + 1,
                    )
                end = pos + 4 + length
                if end > len(buf):
                    break
                out.append((buf[pos], bytes(buf[pos + 4 : end]), self._consumed + pos))
                pos = end
        finally:
            del buf[:pos]
            self._consumed += pos
        return out


def encode_handshake(msg_type: int, body: bytes) -> bytes:
    return bytes((msg_type,)) + len(body).to_bytes(3, "big") + body
