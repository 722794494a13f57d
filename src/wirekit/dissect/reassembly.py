"""TCP stream reassembly for one direction.

Theory of operation
-------------------
Sequence numbers are made relative to the first one seen (the SYN's, when there is one) and
unwrapped across 2**32 against the next expected byte.  ``add(seq, payload)`` trims whatever
was already delivered (a retransmission or an overlap: the first copy wins, as in Wireshark's
default), delivers what is now contiguous, and parks what lies beyond a hole until the hole
fills.  ``data_chunks`` returns the contiguous bytes delivered by that call, so a caller can
tag them with a direction and keep capture order (for "follow stream").  Memory is bounded
by ``limit``: bytes past it are counted, not kept.
"""

from __future__ import annotations

__all__ = ["Reassembler"]

_WRAP = 1 << 32


class Reassembler:
    __slots__ = ("_pending", "base", "delivered", "dropped", "expected", "limit", "retransmitted")

    def __init__(self, isn: int | None = None, limit: int | None = None) -> None:
        self.base = None if isn is None else (isn + 1) & 0xFFFFFFFF  # first payload byte
        self.expected = 0  # relative offset of the next byte to deliver
        self.delivered = 0  # bytes handed out
        self.dropped = 0  # bytes past ``limit``
        self.retransmitted = 0  # segments entirely already seen
        self.limit = limit
        self._pending: dict[int, bytes] = {}

    def _relative(self, seq: int) -> int:
        assert self.base is not None
        rel = (seq - self.base) & 0xFFFFFFFF
        # Unwrap to the value nearest to ``expected``.
        rel += (self.expected // _WRAP) * _WRAP
        if rel - self.expected > _WRAP // 2:
            rel -= _WRAP
        elif self.expected - rel > _WRAP // 2:
            rel += _WRAP
        return rel

    def add(self, seq: int, payload: bytes) -> list[bytes]:
        """Take one segment's payload; return the bytes it made contiguous (maybe none)."""
        if not payload:
            return []
        if self.base is None:
            self.base = seq
        rel = self._relative(seq)
        end = rel + len(payload)
        if end <= self.expected:
            self.retransmitted += 1
            return []
        if rel < self.expected:
            payload = payload[self.expected - rel :]
            rel = self.expected
        if rel > self.expected:
            known = self._pending.get(rel)
            if known is None or len(known) < len(payload):
                self._pending[rel] = payload
            return []
        out = [payload]
        self.expected = end
        while self._pending:
            nxt = min(self._pending)
            if nxt > self.expected:
                break
            piece = self._pending.pop(nxt)
            if nxt + len(piece) > self.expected:
                out.append(piece[self.expected - nxt :])
                self.expected = nxt + len(piece)
        return self._limit(out)

    def _limit(self, chunks: list[bytes]) -> list[bytes]:
        if self.limit is None:
            self.delivered += sum(map(len, chunks))
            return chunks
        kept = []
        for chunk in chunks:
            room = self.limit - self.delivered
            if room <= 0:
                self.dropped += len(chunk)
                continue
            if len(chunk) > room:
                self.dropped += len(chunk) - room
                chunk = chunk[:room]
            kept.append(chunk)
            self.delivered += len(chunk)
        return kept

    @property
    def gaps(self) -> int:
        """Segments still waiting behind a hole (data never delivered)."""
        return len(self._pending)
