"""TCP reassembly: in order, out of order, retransmissions, overlaps, wrap, limit."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from wirekit.dissect.reassembly import Reassembler

DATA = bytes(range(256)) * 8


def segments(data: bytes, isn: int, sizes: list[int]) -> list[tuple[int, bytes]]:
    out, pos, i = [], 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        out.append(((isn + 1 + pos) & 0xFFFFFFFF, data[pos : pos + size]))
        pos += size
        i += 1
    return out


def run(r: Reassembler, segs: list[tuple[int, bytes]]) -> bytes:
    return b"".join(b"".join(r.add(seq, p)) for seq, p in segs)


def test_in_order_and_retransmission() -> None:
    segs = segments(DATA, 1000, [100])
    r = Reassembler(1000)
    assert run(r, segs + segs[3:5]) == DATA
    assert r.retransmitted == 2 and r.gaps == 0


def test_out_of_order_and_overlap_first_copy_wins() -> None:
    r = Reassembler(0)
    assert r.add(6, b"WORLD") == []  # beyond a hole
    assert r.add(1, b"hello") == [b"hello", b"WORLD"]
    assert r.add(3, b"XXXXXXXXzz") == [b"zz"]  # overlap: the old bytes stay
    assert r.expected == 12


def test_sequence_wrap() -> None:
    isn = 0xFFFFFF00
    segs = segments(DATA, isn, [64, 100])
    assert run(Reassembler(isn), segs) == DATA


def test_limit_counts_dropped_bytes() -> None:
    r = Reassembler(0, limit=300)
    assert len(run(r, segments(DATA, 0, [128]))) == 300
    assert r.dropped == len(DATA) - 300


def test_without_syn_starts_at_first_segment() -> None:
    r = Reassembler()
    assert r.add(5000, b"abc") == [b"abc"] and r.add(5003, b"d") == [b"d"]


@given(seed=st.integers(0, 2**32), isn=st.integers(0, 2**32 - 1))
@settings(max_examples=80, deadline=None)
def test_any_order_with_duplicates_gives_the_stream(seed: int, isn: int) -> None:
    rng = random.Random(seed)
    segs = segments(DATA, isn, [rng.randint(1, 300) for _ in range(5)])
    shuffled = segs + rng.sample(segs, k=min(3, len(segs)))
    rng.shuffle(shuffled)
    first = next(s for s in shuffled if s == segs[0])
    shuffled.remove(first)
    assert run(Reassembler(isn), [first, *shuffled]) == DATA
