"""Recorded connections as the TCP/UDP packets a capture tool would have seen.

Theory of operation
-------------------
Recording is split in two halves so the relay never waits for the file:

* On the event loop, a :class:`TcpLeg` keeps each connection's sequence numbers and turns
  every tap event into one small *event* tuple (no frame is built here)::

      open()      SYN  ->  SYN-ACK  ->  ACK
      data(side)  segments of ``side``'s bytes, then one ACK from the peer
      fin(side)   FIN-ACK from ``side``, ACK from the peer
      reset(side) RST-ACK from ``side``

  Sequence numbers advance when the event is *offered*, even if the recorder has to drop
  it (queue full): the file then shows a gap ("previous segment not captured"), exactly
  like a capture tool that lost packets, instead of silently joining unrelated bytes.

* In the recorder's writer process, :func:`segments` (headers and payload slices, for
  ``writev``) or :func:`frames` turn an event into Ethernet frames with valid IPv4/IPv6
  and TCP/UDP checksums.  Data is split into segments of the leg's MSS (65495 on IPv4
  loopback, like Linux's ``lo``; 1460 otherwise) and the SYNs advertise that MSS and a
  window scale, so one ACK per relay chunk never overflows the advertised window.

Pure: no sockets, no clock (timestamps are the tap's), no threads.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable

__all__ = ["Event", "TcpLeg", "UdpLeg", "frames", "mss_of", "segments"]

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_ETH_IPV4 = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
_ETH_IPV6 = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x86\xdd"
_WSCALE = 7
_WINDOW = 0xFFFF  # << _WSCALE: 8 MiB, more than one relay chunk
_TCP = struct.Struct("!HHIIBBHHH")
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_PIECE = 4096  # bytes per integer when summing a payload (see _fold)

# (proto, src, dst, seq, ack, flags, payload, timestamp_ns, ack_after)
#   proto 6: TCP; the writer appends the peer's ACK when ack_after is true.
#   proto 17: UDP; seq/ack/flags unused.
Event = tuple[int, tuple[bytes, int], tuple[bytes, int], int, int, int, bytes, int, bool]
Offer = Callable[[Event], None]


_V6_LOOPBACK = b"\0" * 15 + b"\1"
_V4_MAPPED = b"\0" * 10 + b"\xff\xff"


def mss_of(packed: bytes) -> int:
    """The MSS Linux would use from a packed source address: the loopback MTU (65536) or
    Ethernet's 1500.  An IPv4-mapped loopback address (the plaintext leg of a recorded
    ``connect``/``serve`` TLS connection) is loopback in an IPv6 frame."""
    if len(packed) == 4:
        return 65495 if packed[:1] == b"\x7f" else 1460
    if packed == _V6_LOOPBACK or (packed[:12] == _V4_MAPPED and packed[12:13] == b"\x7f"):
        return 65475
    return 1440


def _packed(host: str) -> bytes:
    return ipaddress.ip_address(host).packed


class TcpLeg:
    """Sequence bookkeeping for one recorded TCP connection, ``c`` (client) to ``s``."""

    __slots__ = ("_offer", "c", "done", "fin_c", "fin_s", "isn", "nxt_c", "nxt_s", "opened",
                 "s")

    def __init__(self, offer: Offer, client: tuple[str, int], server: tuple[str, int],
                 isn: int = 1000) -> None:
        self._offer = offer
        self.c = (_packed(client[0]), client[1])
        self.s = (_packed(server[0]), server[1])
        if len(self.c[0]) != len(self.s[0]):
            # An IPv4 client of an IPv6 listener: show both as IPv4-mapped IPv6.
            self.c = (ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + self.c[0][-4:]).packed
                      if len(self.c[0]) == 4 else self.c[0], client[1])
            self.s = (ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + self.s[0][-4:]).packed
                      if len(self.s[0]) == 4 else self.s[0], server[1])
        self.isn = isn
        self.nxt_c = isn
        self.nxt_s = (isn * 7919 + 5000) & 0xFFFFFFFF
        self.fin_c = self.fin_s = self.done = self.opened = False

    def _ends(self, side: str) -> tuple[tuple[bytes, int], tuple[bytes, int]]:
        return (self.c, self.s) if side == "c" else (self.s, self.c)

    def open(self, ts: int) -> None:
        if self.opened:
            return
        self.opened = True
        self._offer((6, self.c, self.s, self.nxt_c, 0, SYN, b"", ts, False))
        self.nxt_c = (self.nxt_c + 1) & 0xFFFFFFFF
        self._offer((6, self.s, self.c, self.nxt_s, self.nxt_c, SYN | ACK, b"", ts, True))
        self.nxt_s = (self.nxt_s + 1) & 0xFFFFFFFF

    def data(self, side: str, payload: bytes, ts: int) -> None:
        if self.done or not payload:
            return
        self.open(ts)
        src, dst = self._ends(side)
        if side == "c":
            self._offer((6, src, dst, self.nxt_c, self.nxt_s, PSH | ACK, payload, ts, True))
            self.nxt_c = (self.nxt_c + len(payload)) & 0xFFFFFFFF
        else:
            self._offer((6, src, dst, self.nxt_s, self.nxt_c, PSH | ACK, payload, ts, True))
            self.nxt_s = (self.nxt_s + len(payload)) & 0xFFFFFFFF

    def fin(self, side: str, ts: int) -> None:
        if self.done or (self.fin_c if side == "c" else self.fin_s):
            return
        self.open(ts)
        src, dst = self._ends(side)
        if side == "c":
            self.fin_c = True
            self._offer((6, src, dst, self.nxt_c, self.nxt_s, FIN | ACK, b"", ts, True))
            self.nxt_c = (self.nxt_c + 1) & 0xFFFFFFFF
        else:
            self.fin_s = True
            self._offer((6, src, dst, self.nxt_s, self.nxt_c, FIN | ACK, b"", ts, True))
            self.nxt_s = (self.nxt_s + 1) & 0xFFFFFFFF
        if self.fin_c and self.fin_s:
            self.done = True

    def reset(self, side: str, ts: int) -> None:
        if self.done:
            return
        self.open(ts)
        self.done = True
        src, dst = self._ends(side)
        seq, ack = (self.nxt_c, self.nxt_s) if side == "c" else (self.nxt_s, self.nxt_c)
        self._offer((6, src, dst, seq, ack, RST | ACK, b"", ts, False))

    def close(self, ts: int) -> None:
        """An orderly end whatever was seen: the missing FINs, client first."""
        if not self.fin_c:
            self.fin("c", ts)
        if not self.fin_s:
            self.fin("s", ts)


class UdpLeg:
    """One recorded UDP session: datagrams each way, no handshake."""

    __slots__ = ("_offer", "c", "s")

    def __init__(self, offer: Offer, client: tuple[str, int], server: tuple[str, int]) -> None:
        self._offer = offer
        self.c = (_packed(client[0]), client[1])
        self.s = (_packed(server[0]), server[1])

    def data(self, side: str, payload: bytes, ts: int) -> None:
        src, dst = (self.c, self.s) if side == "c" else (self.s, self.c)
        self._offer((17, src, dst, 0, 0, 0, payload, ts, False))


# -- the writer process's half: events to frames --------------------------------------------

def _fold(data: bytes | memoryview) -> int:
    """The one's-complement sum of ``data`` as big-endian 16-bit words, modulo 0xFFFF.

    Bytes read as a little-endian integer give the sum of the *byte-swapped* words modulo
    0xFFFF (2**16 = 1 mod 0xFFFF; an odd last byte needs no padding), and swapping the
    sum's two bytes back is a multiplication by 256 modulo 0xFFFF (RFC 1071: the sum does
    not depend on byte order).  Long data is read in 4 KiB pieces (an even size, so their
    integers simply add up): a small integer stays in the CPU cache and the one division
    is short; about three times faster than one big integer."""
    if len(data) <= _PIECE:
        return int.from_bytes(data, "little") % 0xFFFF * 256 % 0xFFFF
    view, fb = memoryview(data), int.from_bytes
    total = sum([fb(view[i : i + _PIECE], "little") for i in range(0, len(view), _PIECE)])
    return total % 0xFFFF * 256 % 0xFFFF


def _csum(total: int) -> int:
    r = total % 0xFFFF
    return 0xFFFF - r if r else 0


def _ip(src: bytes, dst: bytes, proto: int, seg_len: int, ident: int) -> bytes:
    if len(src) == 4:
        head = _IP4.pack(0x45, 0, 20 + seg_len, ident & 0xFFFF, 0x4000, 64, proto, 0, src, dst)
        return _ETH_IPV4 + head[:10] + _csum(_fold(head)).to_bytes(2, "big") + head[12:]
    return _ETH_IPV6 + _IP6.pack(6 << 28, seg_len, proto, 64, src, dst)


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> int:
    if len(src) == 4:
        return _fold(src + dst + struct.pack("!BBH", 0, proto, length))
    return _fold(src + dst + struct.pack("!IxxxB", length, proto))


def _tcp_head(src: tuple[bytes, int], dst: tuple[bytes, int], seq: int, ack: int,
              flags: int, size: int, ident: int, options: bytes = b"",
              payload_sum: int = 0) -> bytes:
    """Ethernet, IP and TCP headers of a segment carrying ``size`` payload bytes whose
    :func:`_fold` is ``payload_sum``."""
    hlen = 20 + len(options)
    length = hlen + size
    head = _TCP.pack(src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, (hlen // 4) << 4,
                     flags, _WINDOW, 0, 0) + options
    total = _pseudo(src[0], dst[0], 6, length) + _fold(head) + payload_sum
    return b"".join((_ip(src[0], dst[0], 6, length, ident), head[:16],
                     _csum(total).to_bytes(2, "big"), head[18:]))


def _udp(src: tuple[bytes, int], dst: tuple[bytes, int], payload: bytes, ident: int) -> bytes:
    length = 8 + len(payload)
    head = struct.pack("!HHHH", src[1], dst[1], length, 0)
    c = _csum(_pseudo(src[0], dst[0], 17, length) + _fold(head) + _fold(payload)) or 0xFFFF
    head = head[:6] + c.to_bytes(2, "big")
    return _ip(src[0], dst[0], 17, length, ident) + head + payload


def _payload_sums(payload: bytes, mss: int, last: list[object]) -> list[int]:
    """Each segment's payload sum; the two legs of a forward carry the same bytes object
    one after the other, so the second leg reuses the first one's sums from ``last``
    (``[payload, mss, sums]``, one per writer): half the cost."""
    if last[0] is payload and last[1] == mss:
        return last[2]  # type: ignore[return-value]
    view = memoryview(payload)
    sums = [_fold(view[i : i + mss]) for i in range(0, len(payload), mss)]
    last[0], last[1], last[2] = payload, mss, sums
    return sums


def segments(event: Event, ident: int, cache: list[object] | None = None,
             ) -> list[tuple[bytes, bytes | memoryview]]:
    """The frames of one event as ``(headers, payload)`` pairs, the payload a slice of the
    event's (no copy: a writer can hand both to ``writev``).  ``ident`` numbers the IPv4
    packets; ``cache``, a ``[None, 0, []]`` list kept by the caller, saves checksum work
    across legs."""
    proto, src, dst, seq, ack, flags, payload, _ts, ack_after = event
    if proto == 17:
        return [(_udp(src, dst, payload, ident), b"")]
    mss = mss_of(src[0])
    out: list[tuple[bytes, bytes | memoryview]] = []
    if flags & SYN:
        opts = struct.pack("!BBHBBBB", 2, 4, mss, 1, 3, 3, _WSCALE)
        out.append((_tcp_head(src, dst, seq, ack, flags, 0, ident, opts), b""))
        advance = 1
    elif payload:
        view = memoryview(payload)
        sums = _payload_sums(payload, mss, cache if cache is not None else [None, 0, []])
        for n, i in enumerate(range(0, len(payload), mss)):
            piece = view[i : i + mss]
            out.append((_tcp_head(src, dst, seq + i, ack, flags, len(piece), ident + len(out),
                                  payload_sum=sums[n]), piece))
        advance = len(payload)
    else:
        out.append((_tcp_head(src, dst, seq, ack, flags, 0, ident), b""))
        advance = 1 if flags & FIN else 0
    if ack_after:
        out.append((_tcp_head(dst, src, ack, seq + advance, ACK, 0, ident + len(out)), b""))
    return out


def frames(event: Event, ident: int, cache: list[object] | None = None) -> list[bytes]:
    """The Ethernet frames for one event (see :func:`segments`)."""
    return [head + piece if piece else head for head, piece in segments(event, ident, cache)]
