"""TCP and UDP conversations, like ``tshark -z conv,tcp`` / ``conv,udp``.

Theory of operation
-------------------
``Conversation`` holds the counters of one connection; ``Tracker.packet_*`` methods are
called by the fast loop in ``wirekit.dissect.summary`` with already-unpacked header fields,
so no per-packet object is ever built.  Both directions of a connection map to the same
conversation through two dictionary keys ``(src, sport, dst, dport)``; the value says which
direction (0: client to server, 1: server to client) the key is.

A TCP conversation is not just its 5-tuple: a SYN (without ACK) on a 5-tuple whose previous
connection saw a FIN or RST, carrying a new initial sequence number, starts a new
conversation, as Wireshark's ``tcp.stream`` does.  Conversations are numbered per protocol in
order of first packet, so ids equal tshark's ``tcp.stream`` / ``udp.stream``.

The client is the sender of the first packet, unless that packet is a SYN-ACK (then it is
its receiver).  ``opened`` is ``handshake`` when SYN, SYN-ACK and the client's ACK were all
seen, ``partial`` when only part of it was, ``midstream`` when no SYN was; ``closed`` is
``rst``, ``fin`` (a FIN from either side) or ``open``.  A segment whose sequence range lies
entirely at or below the highest sequence already seen in its direction counts as a
retransmission (keep-alives excluded).
"""

from __future__ import annotations

from typing import Any

from wirekit.dissect.ip import ipv6_text
from wirekit.dissect.reassembly import Reassembler

__all__ = ["Conversation", "format_address", "format_endpoint"]

_MASK = 0xFFFFFFFF
_HALF = 1 << 31


def format_address(addr: bytes) -> str:
    if len(addr) == 4:
        return "%d.%d.%d.%d" % (*addr,)  # noqa: UP031
    return ipv6_text(addr)


def format_endpoint(addr: bytes, port: int) -> str:
    if len(addr) == 4:
        return "%d.%d.%d.%d:%d" % (*addr, port)  # noqa: UP031
    return f"[{ipv6_text(addr)}]:{port}"


class Conversation:
    __slots__ = (
        "app", "app_detail", "app_limit", "base", "bytes", "chunks", "client", "exp", "fin",
        "first_ns", "follow", "id", "kept", "last_ns", "nxt", "packets", "proto", "reasm",
        "retransmissions", "rst", "server",
        "state", "syn_seq", "udp_payloads",
    )

    def __init__(self, cid: int, proto: str, client: tuple[bytes, int],
                 server: tuple[bytes, int], ts: int) -> None:
        self.id = cid
        self.proto = proto
        self.client = client
        self.server = server
        self.first_ns = ts
        self.last_ns = ts
        self.packets = [0, 0]
        self.bytes = [0, 0]
        self.state = 0  # bit 1: SYN, 2: SYN-ACK, 4: handshake ACK
        self.fin = [False, False]
        self.rst = False
        self.syn_seq: int | None = None
        self.base: list[int | None] = [None, None]  # first sequence number per direction
        self.nxt: list[int | None] = [None, None]  # highest sequence end per direction
        self.retransmissions = 0
        self.reasm: list[Reassembler | None] | None = None
        self.exp: list[int | None] = [None, None]  # next in-order sequence number for reasm
        self.kept = [0, 0]  # payload bytes kept per direction
        self.follow = False  # keep every byte (``--follow``), not just ``app_limit``
        self.chunks: list[tuple[int, bytes]] = []  # reassembled (direction, bytes), in order
        self.udp_payloads: list[list[bytes]] | None = None
        self.app: str | None = None
        self.app_limit = 65536  # bytes kept per direction for application-layer analysis
        self.app_detail: dict[str, Any] = {}

    # -- TCP -------------------------------------------------------------------------------

    def tcp(self, d: int, ts: int, length: int, seq: int, ack: int, flags: int,
            payload: bytes | None, plen: int) -> None:
        self.last_ns = ts
        self.packets[d] += 1
        self.bytes[d] += length
        if flags & 0x07:
            if flags & 0x02:
                if flags & 0x10:
                    self.state |= 2
                else:
                    self.state |= 1
                    self.syn_seq = seq
                self.base[d] = seq
            if flags & 0x01:
                self.fin[d] = True
            if flags & 0x04:
                self.rst = True
        elif flags & 0x10 and self.state == 3 and d == 0 and not plen:
            self.state = 7
        if self.base[d] is None:
            self.base[d] = seq
        seglen = plen + (flags & 0x01) + ((flags >> 1) & 0x01)
        end = (seq + seglen) & _MASK
        nxt = self.nxt[d]
        if nxt is None:
            self.nxt[d] = end
        elif seglen:
            diff = (end - nxt) & _MASK
            if diff == 0 or diff >= _HALF:
                if not (plen <= 1 and seglen == plen and (seq + 1) & _MASK == nxt):
                    self.retransmissions += 1
            else:
                self.nxt[d] = end
        if payload is not None and self.reasm is not None:
            r = self.reasm[d]
            if r is None:
                # In-order data (the common case) needs no reassembler: append it.
                e = self.in_order_seq(d, seq)
                kept = self.kept[d]
                if seq == e:
                    self.exp[d] = (seq + plen) & _MASK
                    if not self.follow:
                        room = self.app_limit - kept
                        if room <= 0:
                            return
                        if plen > room:
                            payload = payload[:room]
                    self.chunks.append((d, payload))
                    self.kept[d] = kept + len(payload)
                    return
                # A hole, a retransmission or an overlap: hand over to a reassembler that
                # continues where the in-order path stopped.
                r = self.reasm[d] = Reassembler(None, None if self.follow else self.app_limit)
                r.base = (e - kept) & _MASK
                r.expected = r.delivered = kept
            chunks = r.add(seq, payload)
            if chunks:
                self.chunks.extend((d, c) for c in chunks)
                self.kept[d] = r.delivered

    def in_order_seq(self, d: int, seq: int) -> int:
        """The sequence number of the next in-order byte of direction ``d`` (before any
        reassembler takes over); ``seq`` is the segment's, used before the first one."""
        e = self.exp[d]
        if e is None:
            base = self.base[d]
            e = seq if base is None or base == seq else (base + 1) & _MASK
        return e

    def wants_payload(self, d: int) -> bool:
        return self.reasm is not None and (self.follow or self.kept[d] < self.app_limit)

    @property
    def truncated(self) -> bool:
        """More payload passed than was kept for analysis (``app_limit``)."""
        return not self.follow and (self.kept[0] >= self.app_limit or
                                    self.kept[1] >= self.app_limit)

    @property
    def closed_state(self) -> str | None:
        if self.proto != "tcp":
            return None
        if self.rst:
            return "rst"
        if self.fin[0] or self.fin[1]:
            return "fin"
        return "open"

    @property
    def opened_state(self) -> str | None:
        if self.proto != "tcp":
            return None
        if self.state == 7:
            return "handshake"
        return "partial" if self.state else "midstream"

    @property
    def ended(self) -> bool:
        return self.rst or (self.fin[0] and self.fin[1])

    def split_by(self, seq: int) -> bool:
        """Does a SYN with ``seq`` on this 5-tuple start a new conversation?"""
        return (self.rst or self.fin[0] or self.fin[1]) and seq != self.syn_seq

    # -- UDP -------------------------------------------------------------------------------

    def udp(self, d: int, ts: int, length: int, payload: bytes | None) -> None:
        self.last_ns = ts
        self.packets[d] += 1
        self.bytes[d] += length
        if payload is not None and self.udp_payloads is not None:
            if self.follow:
                self.chunks.append((d, payload))
            if len(self.udp_payloads[d]) < 64:
                self.udp_payloads[d].append(payload)

    # -- results ---------------------------------------------------------------------------

    @property
    def client_text(self) -> str:
        return format_endpoint(*self.client)

    @property
    def server_text(self) -> str:
        return format_endpoint(*self.server)

    def stream(self, d: int) -> bytes:
        """Reassembled bytes of direction ``d`` kept for analysis (capped)."""
        return b"".join(c for cd, c in self.chunks if cd == d)
