"""The offline dissection fast path: one pass over a capture buffer.

Theory of operation
-------------------
``Summary.run(buf)`` walks the capture with ``Decoder.raw_packets`` (plain tuples, no packet
objects), decodes link, IP and transport headers in place with precompiled
``struct.Struct.unpack_from`` calls on the (usually mmapped) buffer, and updates
``Conversation`` counters.  Payload bytes are sliced out only while a conversation still
wants them for application-layer analysis (the first ``app_limit`` bytes per direction, or
everything for the followed conversation).  When a TCP conversation ends (RST, or FIN both
ways) its application layer is analysed and its buffered bytes released, so memory stays
bounded by the number of open conversations, not the size of the capture.

A damaged capture: everything before the damage is counted, then ``run`` re-raises the
``ParseError`` (after finishing the analysis of what was read) so the caller can report it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from wirekit.dissect import app as applayer
from wirekit.dissect.conversations import Conversation, format_address
from wirekit.dissect.ip import tcp_flag_names
from wirekit.errors import ParseError
from wirekit.pcapng.reader import Buffer, Decoder

__all__ = ["Summary"]

_U16 = struct.Struct("!H").unpack_from
_IPV4 = struct.Struct("!BxHxxHxB2x4s4s").unpack_from
_IPV6 = struct.Struct("!4xHBx16s16s").unpack_from
_TCP = struct.Struct("!HHIIH").unpack_from
# Addresses and ports come out as the 12 raw bytes that hold them: the key the conversation
# is looked up by (see ``Summary._v4tcp``), made by the unpack itself instead of a slice.
_ETH_V4_TCP = struct.Struct("!12xHBxHxxHxB2x12sIIH").unpack_from
_UNPORTS = struct.Struct("!HH").unpack_from
_PORTS = struct.Struct("!HH").pack
_TCPWIN = struct.Struct("!H").unpack_from
_UDP = struct.Struct("!HHH").unpack_from
_U32LE = struct.Struct("<I").unpack_from
_U32BE = struct.Struct("!I").unpack_from
_V6EXT = frozenset({0, 43, 44, 60, 51, 135, 139, 140})
_V6FAMILIES = frozenset({10, 24, 28, 30})
_PROGRESS_EVERY = 1 << 16
_MASK = 0xFFFFFFFF
_HALF = 1 << 31


class Summary:
    """Conversations, application-layer findings and counts for one capture."""

    def __init__(self, *, app: bool = True, follow: tuple[str, int] | None = None,
                 app_limit: int = 65536,
                 on_packet: Callable[[str], None] | None = None,
                 on_http: Callable[[dict[str, Any]], None] | None = None,
                 on_http_json: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.follow_key = follow
        self.app_limit = app_limit
        self.on_packet = on_packet
        self.decoder = Decoder()
        self.packets = 0
        self.conversations: list[Conversation] = []
        self.ids = {"tcp": 0, "udp": 0}
        self.followed: Conversation | None = None
        # HTTP exchanges go to ``on_http`` when given (say, to be encoded at once instead
        # of kept as dicts: millions of small objects on a big capture), else to ``http``.
        self.http: list[dict[str, Any]] = []
        self.add_http: Callable[[dict[str, Any]], None] = on_http or self.http.append
        # ... and, with ``on_http_json`` (a sink that takes an exchange as its compact JSON
        # text, in the same order as ``on_http``'s), the commonest exchanges straight from
        # their bytes (``dissect.http1_json``), without a dict.
        self.add_http_json = on_http_json
        self.tls: list[dict[str, Any]] = []
        self.dns: list[dict[str, Any]] = []
        self.error: ParseError | None = None
        self.first_ns: int | None = None
        self.non_ip = 0
        # Conversations by (src, sport, dst, dport, protocol), both directions ...
        self._keys: dict[tuple[bytes, int, bytes, int, int], tuple[Conversation, int]] = {}
        # ... except IPv4 TCP ones, which are keyed by the raw header bytes src ip, dst ip,
        # src port, dst port (as on the wire): what the Ethernet + IPv4 + TCP fast path
        # looks up with one slice.
        self._v4tcp: dict[bytes, tuple[Conversation, int]] = {}

    # -- conversations -------------------------------------------------------------------

    def _new(self, proto: str, src: bytes, sport: int, dst: bytes, dport: int, ts: int,
             pnum: int, swap: bool, k: bytes | None = None) -> tuple[Conversation, int]:
        """A new conversation; ``k`` is the ``_v4tcp`` key of the packet (IPv4 TCP only)."""
        v4tcp = pnum == 6 and len(src) == 4
        if v4tcp:
            if k is None:
                k = src + dst + _PORTS(sport, dport)
            old = self._v4tcp.get(k)
        else:
            old = self._keys.get((src, sport, dst, dport, pnum))
        if old is not None:
            self._finish(old[0])
        cid = self.ids[proto]
        self.ids[proto] = cid + 1
        client, server = ((dst, dport), (src, sport)) if swap else ((src, sport), (dst, dport))
        conv = Conversation(cid, proto, client, server, ts)
        conv.app_limit = self.app_limit
        if self.follow_key == (proto, cid):
            conv.follow = True
            self.followed = conv
        if self.app or conv.follow:
            if proto == "tcp":
                conv.reasm = [None, None]
            else:
                conv.udp_payloads = ([], [])  # type: ignore[assignment]
        self.conversations.append(conv)
        forward = (conv, 1 if swap else 0)
        backward = (conv, 0 if swap else 1)
        # Backward first: a packet sent to its own address and port keys both ways alike.
        if v4tcp:
            self._v4tcp[dst + src + _PORTS(dport, sport)] = backward
            assert k is not None
            self._v4tcp[k] = forward
        else:
            self._keys[(dst, dport, src, sport, pnum)] = backward
            self._keys[(src, sport, dst, dport, pnum)] = forward
        return forward

    def _finish(self, conv: Conversation) -> None:
        if conv.reasm is None and conv.udp_payloads is None:
            return
        if self.app:
            applayer.analyse(conv, self)
        if not conv.follow:
            conv.reasm = None
            conv.chunks = []
            conv.udp_payloads = None

    # -- the loop -----------------------------------------------------------------------

    def run(self, buf: Buffer, progress: Callable[[int], None] | None = None) -> None:
        keys = self._keys
        v4tcp = self._v4tcp
        new = self._new
        on_packet = self.on_packet
        n = self.packets
        no_first = self.first_ns is None
        try:
            for ts, lt, off, caplen, orig in self.decoder.raw_packets(buf):
                n += 1
                if progress is not None and not n % _PROGRESS_EVERY:
                    progress(off)
                end = off + caplen
                fast = False
                if lt == 1 and caplen >= 48:
                    # Ethernet + IPv4 without options + TCP: one unpack for all three.
                    (et, vihl, total, frag, proto, k, seq, ack,
                     offflags) = _ETH_V4_TCP(buf, off)
                    if (et == 0x0800 and vihl == 0x45 and proto == 6 and total >= 40
                            and not frag & 0x1FFF):
                        fast = True
                        l4 = off + 34
                        ipend = off + 14 + total
                        if ipend > end:
                            ipend = end
                if not fast:
                    if lt == 1:
                        if caplen < 14:
                            continue
                        (et,) = _U16(buf, off + 12)
                        p = off + 14
                        if et == 0x8100 and caplen >= 18:
                            (et,) = _U16(buf, off + 16)
                            p += 4
                    elif lt == 113:
                        if caplen < 16:
                            continue
                        (et,) = _U16(buf, off + 14)
                        p = off + 16
                    elif lt == 276:
                        if caplen < 20:
                            continue
                        (et,) = _U16(buf, off)
                        p = off + 20
                    elif lt in (101, 228, 229):
                        if caplen < 1:
                            continue
                        v = buf[off] >> 4
                        et = 0x0800 if v == 4 else 0x86DD if v == 6 else 0
                        p = off
                    elif lt in (0, 108):
                        if caplen < 4:
                            continue
                        (fam,) = _U32BE(buf, off)
                        if lt == 0 and fam >= 256:
                            (fam,) = _U32LE(buf, off)
                        et = 0x0800 if fam == 2 else 0x86DD if fam in _V6FAMILIES else 0
                        p = off + 4
                    else:
                        et = 0
                        p = off
                    if et == 0x0800:
                        if end - p < 20:
                            self.non_ip += 1
                            continue
                        vihl, total, frag, proto, src, dst = _IPV4(buf, p)
                        ihl = (vihl & 15) << 2
                        ipend = p + total
                        if ipend > end or total < ihl:
                            ipend = end
                        l4 = p + ihl
                        if ihl < 20 or frag & 0x1FFF:
                            continue
                    elif et == 0x86DD:
                        if end - p < 40:
                            self.non_ip += 1
                            continue
                        plen6, proto, src, dst = _IPV6(buf, p)
                        l4 = p + 40
                        ipend = min(end, l4 + plen6)
                        fragmented = False
                        while proto in _V6EXT:
                            if ipend - l4 < 8:
                                proto = -1
                                break
                            if proto == 44:
                                fragmented = bool(_U16(buf, l4 + 2)[0] & 0xFFF8)
                                size = 8
                            elif proto == 51:
                                size = (buf[l4 + 1] + 2) * 4
                            else:
                                size = (buf[l4 + 1] + 1) * 8
                            proto = buf[l4]
                            l4 += size
                        if fragmented:
                            continue
                    else:
                        self.non_ip += 1
                        if on_packet is not None:
                            on_packet(self._line(n, ts, "?", "?", "?", orig, "(not IP)"))
                        continue
                if fast or proto == 6:
                    if not fast:
                        if ipend - l4 < 20:
                            continue
                        sport, dport, seq, ack, offflags = _TCP(buf, l4)
                    flags = offflags & 0x1FF
                    if fast:
                        e = v4tcp.get(k)
                        if e is None or (flags & 0x12 == 0x02 and e[0].split_by(seq)) or (
                                on_packet is not None):
                            src, dst = k[:4], k[4:8]
                            sport, dport = _UNPORTS(k, 8)
                            if e is None or (flags & 0x12 == 0x02 and e[0].split_by(seq)):
                                e = new("tcp", src, sport, dst, dport, ts, 6,
                                        flags & 0x12 == 0x12, k)
                    else:
                        e = (v4tcp.get(src + dst + _PORTS(sport, dport)) if len(src) == 4
                             else keys.get((src, sport, dst, dport, 6)))
                        if e is None or (flags & 0x12 == 0x02 and e[0].split_by(seq)):
                            e = new("tcp", src, sport, dst, dport, ts, 6, flags & 0x12 == 0x12)
                    conv, d = e
                    pstart = l4 + ((offflags >> 10) & 0x3C)  # data offset * 4
                    plen = ipend - pstart
                    if plen <= 0 and flags == 0x10 and (conv.state == 7 or (
                            conv.state == 3 and not d and conv.base[0] is not None
                            and conv.nxt[0] is not None)):
                        # A bare ACK on an established connection, or the client's ACK
                        # completing the handshake: counters (and the state) only, as
                        # Conversation.tcp would.
                        conv.last_ns = ts
                        conv.packets[d] += 1
                        conv.bytes[d] += orig
                        conv.state = 7
                    elif (not flags & 0x07 and conv.state == 7 and plen > 0 and (
                            conv.reasm is None or not (conv.follow or
                                                       conv.kept[d] < conv.app_limit))
                            and conv.nxt[d] is not None
                            and 0 < ((seq + plen - conv.nxt[d]) & _MASK) < _HALF):
                        # New data on an established connection whose payload is not
                        # wanted: counters and the highest sequence number only.
                        conv.last_ns = ts
                        conv.packets[d] += 1
                        conv.bytes[d] += orig
                        conv.nxt[d] = (seq + plen) & _MASK
                    elif (not flags & 0x07 and conv.state == 7 and plen > 0
                            and conv.reasm is not None and conv.reasm[d] is None
                            and conv.nxt[d] is not None
                            and 0 < ((seq + plen - conv.nxt[d]) & _MASK) < _HALF
                            and (conv.follow or conv.kept[d] + plen <= conv.app_limit)
                            and seq == conv.in_order_seq(d, seq)):
                        # New in-order data that is kept whole for analysis: what
                        # Conversation.tcp would do, inline.
                        conv.last_ns = ts
                        conv.packets[d] += 1
                        conv.bytes[d] += orig
                        conv.nxt[d] = conv.exp[d] = (seq + plen) & _MASK
                        conv.chunks.append((d, bytes(buf[pstart:ipend])))
                        conv.kept[d] += plen
                    else:
                        if plen < 0:
                            plen = 0
                        payload = (bytes(buf[pstart:ipend]) if plen and conv.reasm is not None
                                   and (conv.follow or conv.kept[d] < conv.app_limit)
                                   else None)
                        conv.tcp(d, ts, orig, seq, ack, flags, payload, plen)
                        if flags & 0x05 and conv.ended and conv.reasm is not None and (
                                not conv.follow):
                            self._finish(conv)
                    if on_packet is not None:
                        on_packet(self._tcp_line(n, ts, conv, d, src, sport, dst, dport, seq,
                                                 ack, flags, plen, orig,
                                                 _TCPWIN(buf, l4 + 14)[0]))
                elif proto == 17:
                    if ipend - l4 < 8:
                        continue
                    sport, dport, ulen = _UDP(buf, l4)
                    e = keys.get((src, sport, dst, dport, 17))
                    if e is None:
                        e = new("udp", src, sport, dst, dport, ts, 17, False)
                    conv, d = e
                    uend = min(ipend, l4 + ulen) if ulen >= 8 else ipend
                    payload = (bytes(buf[l4 + 8 : uend]) if conv.udp_payloads is not None
                               else None)
                    conv.udp(d, ts, orig, payload)
                    if on_packet is not None:
                        name = "DNS" if applayer.is_dns_port(sport, dport) else "UDP"
                        on_packet(self._line(n, ts, format_address(src),
                                             format_address(dst), name,
                                             orig, f"{sport} → {dport} Len={uend - l4 - 8}"))
                elif on_packet is not None:
                    on_packet(self._line(n, ts, format_address(src),
                                         format_address(dst),
                                         "IPv4" if len(src) == 4 else "IPv6", orig,
                                         f"protocol {proto}"))
                if no_first:
                    if self.first_ns is None:
                        self.first_ns = ts
                    no_first = False
        except ParseError as exc:
            self.error = exc
        finally:
            self.packets = n
            for conv in self.conversations:
                self._finish(conv)
        if self.first_ns is None and self.conversations:
            self.first_ns = self.conversations[0].first_ns
        if self.error is not None:
            raise self.error

    # -- per-packet lines (--packets) -------------------------------------------------------

    def _line(self, n: int, ts: int, src: str, dst: str, proto: str, length: int,
              info: str) -> str:
        if self.first_ns is None:
            self.first_ns = ts
        rel = (ts - self.first_ns) / 1e9
        return f"{n:6d} {rel:12.6f} {src:>15} → {dst:<15} {proto:<5} {length:5d} {info}"

    def _tcp_line(self, n: int, ts: int, conv: Conversation, d: int, src: bytes, sport: int,
                  dst: bytes, dport: int, seq: int, ack: int, flags: int, plen: int,
                  length: int, window: int) -> str:
        base = conv.base[d]
        rseq = (seq - base) & 0xFFFFFFFF if base is not None else seq
        info = f"{sport} → {dport} [{', '.join(tcp_flag_names(flags))}] Seq={rseq}"
        if flags & 0x10:
            obase = conv.base[1 - d]
            info += f" Ack={(ack - obase) & 0xFFFFFFFF if obase is not None else ack}"
        info += f" Win={window} Len={plen}"
        return self._line(n, ts, format_address(src),
                          format_address(dst), "TCP", length, info)
