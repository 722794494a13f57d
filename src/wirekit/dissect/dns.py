"""DNS messages (RFC 1035) as carried over UDP: header, questions, answer records.

Names follow compression pointers; a pointer chain that revisits an offset (a loop) or a
name longer than 255 bytes raises ``ParseError``.  Record data is decoded for A, AAAA,
CNAME, NS, PTR, MX and TXT; other types keep their raw bytes as hex.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from wirekit.dissect.ip import ipv6_text
from wirekit.errors import ParseError

__all__ = ["DnsMessage", "DnsQuestion", "DnsRecord", "parse_dns", "type_name"]

_HEADER = struct.Struct("!HHHHHH")
_QTAIL = struct.Struct("!HH")
_RTAIL = struct.Struct("!HHIH")
_TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
          33: "SRV", 41: "OPT", 65: "HTTPS", 255: "ANY"}
_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def type_name(rtype: int) -> str:
    return _TYPES.get(rtype, f"TYPE{rtype}")


@dataclass(frozen=True, slots=True)
class DnsQuestion:
    name: str
    type: str
    klass: int


@dataclass(frozen=True, slots=True)
class DnsRecord:
    name: str
    type: str
    klass: int
    ttl: int
    data: str


@dataclass(frozen=True, slots=True)
class DnsMessage:
    id: int
    response: bool
    opcode: int
    rcode: str
    flags: int
    questions: tuple[DnsQuestion, ...]
    answers: tuple[DnsRecord, ...]
    authority: int
    additional: int


def _name(data: bytes, off: int) -> tuple[str, int]:
    """The name at ``off`` and the offset just after it (in the original position)."""
    labels: list[str] = []
    seen: set[int] = set()
    after: int | None = None
    total = 0
    while True:
        if off >= len(data):
            raise ParseError("DNS name runs past the message", offset=off)
        length = data[off]
        if length & 0xC0 == 0xC0:
            if off + 1 >= len(data):
                raise ParseError("DNS compression pointer truncated", offset=off)
            target = ((length & 0x3F) << 8) | data[off + 1]
            if target in seen:
                raise ParseError("DNS compression pointer loop", offset=off)
            seen.add(target)
            if after is None:
                after = off + 2
            off = target
            continue
        if length & 0xC0:
            raise ParseError(f"DNS label type 0x{length & 0xC0:02x} unsupported", offset=off)
        if length == 0:
            return ".".join(labels) or ".", (off + 1 if after is None else after)
        if off + 1 + length > len(data):
            raise ParseError("DNS label runs past the message", offset=off)
        total += length + 1
        if total > 255:
            raise ParseError("DNS name longer than 255 bytes", offset=off)
        labels.append(data[off + 1 : off + 1 + length].decode("ascii", "backslashreplace"))
        off += 1 + length


def _rdata(data: bytes, rtype: int, off: int, length: int) -> str:
    raw = data[off : off + length]
    if rtype == 1 and length == 4:
        return str(ipaddress.IPv4Address(raw))
    if rtype == 28 and length == 16:
        return ipv6_text(raw)
    if rtype in (2, 5, 12):
        return _name(data, off)[0]
    if rtype == 15 and length >= 3:
        return f"{int.from_bytes(raw[:2], 'big')} {_name(data, off + 2)[0]}"
    if rtype == 16:
        parts, i = [], 0
        while i < len(raw):
            n = raw[i]
            parts.append(raw[i + 1 : i + 1 + n].decode("utf-8", "replace"))
            i += 1 + n
        return " ".join(parts)
    return raw.hex()


def parse_dns(data: bytes) -> DnsMessage:
    """Decode one DNS message; ``ParseError`` if it is malformed or truncated."""
    if len(data) < 12:
        raise ParseError("DNS header truncated", offset=0)
    ident, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    off = 12
    questions = []
    for _ in range(qd):
        name, off = _name(data, off)
        if off + 4 > len(data):
            raise ParseError("DNS question truncated", offset=off)
        qtype, qclass = _QTAIL.unpack_from(data, off)
        off += 4
        questions.append(DnsQuestion(name, type_name(qtype), qclass))
    answers = []
    for _ in range(an):
        name, off = _name(data, off)
        if off + 10 > len(data):
            raise ParseError("DNS record truncated", offset=off)
        rtype, rclass, ttl, rdlen = _RTAIL.unpack_from(data, off)
        off += 10
        if off + rdlen > len(data):
            raise ParseError("DNS record data truncated", offset=off)
        answers.append(DnsRecord(name, type_name(rtype), rclass, ttl,
                                 _rdata(data, rtype, off, rdlen)))
        off += rdlen
    rcode = flags & 0xF
    return DnsMessage(ident, bool(flags & 0x8000), (flags >> 11) & 0xF,
                      _RCODES.get(rcode, str(rcode)), flags, tuple(questions), tuple(answers),
                      ns, ar)


def build_query(ident: int, name: str, qtype: int = 1) -> bytes:
    """A minimal standard query (for tests and demos)."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.strip(".").split(".") if p)
    return _HEADER.pack(ident, 0x0100, 1, 0, 0, 0) + qname + b"\0" + _QTAIL.pack(qtype, 1)
