"""pcapng/pcap codec: round trips, byte orders, options, pcap variants, damage."""

from __future__ import annotations

import contextlib
import io
import random
import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirekit.errors import ParseError
from wirekit.pcapng import (
    SECRETS_TLS_KEY_LOG,
    CaptureParser,
    Decoder,
    DecryptionSecrets,
    Interface,
    Packet,
    PcapngWriter,
    SectionHeader,
    read,
)
from wirekit.pcapng.blocks import LINKTYPE_ETHERNET, LINKTYPE_RAW


def write_sample(byte_order: str = "<") -> bytes:
    f = io.BytesIO()
    w = PcapngWriter(f, byte_order=byte_order)
    a = w.add_interface(LINKTYPE_ETHERNET, name="lo", snaplen=65535)
    b = w.add_interface(LINKTYPE_RAW, tsresol=6)
    w.write_secrets(b"CLIENT_RANDOM 00 11\n")
    w.write_packet(a, b"\x01\x02\x03", 1_700_000_000_123_456_789, comment="first")
    w.write_packet(b, b"\x45" + b"\0" * 19, 1_700_000_001_000_001_000, original_length=1500)
    w.write_packet(a, b"", 5)
    return f.getvalue()


def pcap_file(byte_order: str, nano: bool, records: list[tuple[int, int, bytes]],
              linktype: int = 1) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(byte_order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for sec, frac, data in records:
        out += struct.pack(byte_order + "IIII", sec, frac, len(data), len(data) + 10) + data
    return out


def events_of(data: bytes) -> list:
    return list(read(io.BytesIO(data)))


def feed_three_ways(data: bytes) -> list[list]:
    """Whole, byte by byte, and whole followed by a partial block: all must agree."""
    results = []
    for pieces in ([data], [data[i : i + 1] for i in range(len(data))]):
        p = CaptureParser()
        evs = []
        for piece in pieces:
            p.feed(piece)
            evs.extend(p.events())
        p.close()
        results.append(evs)
    p = CaptureParser()
    p.feed(data + b"\x06\x00\x00\x00\x40\x00")  # the start of another block
    evs = list(p.events())
    with pytest.raises(ParseError, match=f"offset {len(data)}"):
        p.close()
    results.append(evs)
    return results


@pytest.mark.parametrize("bo", ["<", ">"])
def test_round_trip_both_byte_orders(bo: str) -> None:
    data = write_sample(bo)
    evs = events_of(data)
    assert [type(e) for e in evs] == [SectionHeader, Interface, Interface, DecryptionSecrets,
                                      Packet, Packet, Packet]
    shb, ia, ib, dsb, p1, p2, p3 = evs
    assert shb.byte_order == bo and shb.version == (1, 0)
    assert ia.name == "lo" and ia.snaplen == 65535 and ia.tsresol == 10**9
    assert ib.tsresol == 10**6 and ib.linktype == LINKTYPE_RAW
    assert dsb.secrets_type == SECRETS_TLS_KEY_LOG and dsb.data == b"CLIENT_RANDOM 00 11\n"
    assert (p1.data, p1.timestamp_ns, p1.linktype) == (b"\x01\x02\x03", 1_700_000_000_123_456_789,
                                                       1)
    assert dict(p1.options)[1] == b"first"
    assert p2.timestamp_ns == 1_700_000_001_000_001_000 and p2.original_length == 1500
    assert p3.data == b"" and p3.timestamp_ns == 5
    for evs3 in feed_three_ways(data):
        assert [type(e) for e in evs3] == [type(e) for e in evs]
        assert [getattr(e, "data", None) for e in evs3] == [getattr(e, "data", None) for e in evs]


@given(packets=st.lists(st.tuples(st.binary(max_size=300), st.integers(0, 2**63 - 1)),
                        max_size=20),
       bo=st.sampled_from("<>"), tsresol=st.sampled_from([6, 9]))
@settings(max_examples=60, deadline=None)
def test_round_trip_hypothesis(packets: list[tuple[bytes, int]], bo: str, tsresol: int) -> None:
    f = io.BytesIO()
    w = PcapngWriter(f, byte_order=bo, flush=False)
    iface = w.add_interface(tsresol=tsresol)
    for data, ts in packets:
        w.write_packet(iface, data, ts)
    got = [e for e in events_of(f.getvalue()) if isinstance(e, Packet)]
    assert [p.data for p in got] == [d for d, _ in packets]
    expect = [ts if tsresol == 9 else ts // 1000 * 1000 for _, ts in packets]
    assert [p.timestamp_ns for p in got] == expect
    raw = list(Decoder().raw_packets(f.getvalue()))
    assert [(r[0], r[3]) for r in raw] == [(t, len(d)) for t, (d, _) in zip(expect, packets,
                                                                             strict=True)]


@pytest.mark.parametrize("bo", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_classic_pcap(bo: str, nano: bool) -> None:
    data = pcap_file(bo, nano, [(10, 20, b"abc"), (11, 999_999, b"")])
    for evs in feed_three_ways(data):
        shb, p1, p2 = evs
        assert shb.pcap and shb.byte_order == bo
        assert p1.data == b"abc" and p1.original_length == 13 and p1.linktype == 1
        mult = 1 if nano else 1000
        assert p1.timestamp_ns == 10 * 10**9 + 20 * mult
        assert p2.timestamp_ns == 11 * 10**9 + 999_999 * mult
    raw = list(Decoder().raw_packets(data))
    assert [(r[3], r[4]) for r in raw] == [(3, 13), (0, 10)]


def test_simple_packet_block_and_unknown_block() -> None:
    f = io.BytesIO()
    w = PcapngWriter(f)
    w.add_interface(snaplen=4)
    body = struct.pack("<I", 6) + b"abcdef\0\0"
    spb = struct.pack("<II", 3, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))
    custom = struct.pack("<II", 0x0BAD, 16) + b"wxyz" + struct.pack("<I", 16)
    evs = events_of(f.getvalue() + spb + custom)
    assert evs[2].data == b"abcd" and evs[2].original_length == 6  # cut to the snaplen
    assert evs[3].block_type == 0x0BAD and evs[3].body == b"wxyz"
    raw = list(Decoder().raw_packets(f.getvalue() + spb + custom))
    assert raw[0][3] == 4


def test_not_a_capture() -> None:
    with pytest.raises(ParseError, match="not a pcap or pcapng"):
        events_of(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(ParseError, match="empty"):
        events_of(b"")


def test_every_prefix_gives_events_then_parse_error() -> None:
    data = write_sample()
    full = events_of(data)
    boundaries = {0} | {e.offset for e in full} | {len(data)}
    for n in range(len(data)):
        got = []
        error = None
        try:
            for ev in read(io.BytesIO(data[:n])):
                got.append(ev)
        except ParseError as exc:
            error = exc
        assert got == full[: len(got)]
        # Everything that ended before the cut was yielded.
        assert len(got) == sum(1 for e in full if _end_of(e, full, data) <= n)
        if n in boundaries and n:
            assert error is None  # cut exactly between blocks: a valid, shorter capture
        else:
            assert error is not None and error.offset is not None and error.offset <= n


def _end_of(ev, full, data):
    later = [e.offset for e in full if e.offset > ev.offset]
    return min(later) if later else len(data)


@pytest.mark.parametrize("kind", ["pcapng-le", "pcapng-be", "pcap"])
def test_byte_flip_mutants_only_parse_error(kind: str) -> None:
    if kind == "pcap":
        data = pcap_file("<", False, [(1, 2, b"x" * 40), (3, 4, b"y" * 7)])
    else:
        data = write_sample("<" if kind.endswith("le") else ">")
    rng = random.Random(kind)
    for _ in range(1000):
        mutant = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            mutant[rng.randrange(len(mutant))] = rng.randrange(256)
        for driver in (lambda b: list(read(io.BytesIO(b))),
                       lambda b: list(Decoder().raw_packets(b))):
            with contextlib.suppress(ParseError):
                driver(bytes(mutant))


def test_oversized_lengths_rejected_without_allocation() -> None:
    head = write_sample()[:28]  # the SHB alone
    huge_epb = struct.pack("<II", 6, 0x7FFFFFF0) + b"\0" * 40
    huge_pcap = pcap_file("<", False, []) + struct.pack("<IIII", 0, 0, 0xFFFFFF00, 0xFFFFFF00)
    huge_dsb = struct.pack("<II", 10, 32) + struct.pack("<II", SECRETS_TLS_KEY_LOG,
                                                        0x7FFFFFFF) + b"\0" * 12
    huge_dsb += struct.pack("<I", 32)
    tracemalloc.start()
    try:
        for data in (head + huge_epb, huge_pcap, head + huge_dsb):
            with pytest.raises(ParseError):
                list(read(io.BytesIO(data)))
            with pytest.raises(ParseError):
                list(Decoder().raw_packets(data))
            p = CaptureParser()
            p.feed(data)
            with pytest.raises(ParseError):
                list(p.events())
                p.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_bad_trailer_and_undefined_interface() -> None:
    data = bytearray(write_sample())
    with pytest.raises(ParseError, match="trailing length"):
        events_of(bytes(data[:-1]) + b"\x99")
    f = io.BytesIO()
    w = PcapngWriter(f)
    w.add_interface()
    w.write_packet(0, b"ab", 1)
    raw = bytearray(f.getvalue())
    struct.pack_into("<I", raw, len(raw) - 36 + 8, 7)  # the EPB's interface id
    with pytest.raises(ParseError, match="undefined interface 7"):
        events_of(bytes(raw))
    with pytest.raises(ParseError, match="undefined interface 7"):
        list(Decoder().raw_packets(bytes(raw)))


def test_writer_flushes_each_block(tmp_path) -> None:
    path = tmp_path / "x.pcapng"
    with open(path, "wb") as f:
        w = PcapngWriter(f)
        w.add_interface()
        w.write_packet(0, b"hello", 1)
        # Not closed yet: another reader must already see every block.
        with open(path, "rb") as g:
            evs = list(read(g))
        assert isinstance(evs[-1], Packet) and evs[-1].data == b"hello"
