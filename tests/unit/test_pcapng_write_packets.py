"""``PcapngWriter.write_packets`` (the live-capture batch path) writes exactly what
``write_packet`` writes, in one ``write`` call."""

from __future__ import annotations

import io

import pytest

from wirekit.pcapng import Packet, PcapngWriter, read


class CountingFile(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data) -> int:  # type: ignore[no-untyped-def, override]
        self.writes += 1
        return super().write(data)


@pytest.mark.parametrize("tsresol", [9, 6, 3])
@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_write_packets_matches_write_packet(tsresol: int, byte_order: str) -> None:
    packets = [(bytes(range(n % 251)) * (1 + n % 3), 1_795_000_000_123_456_789 + n * 997,
                n % 251 * (1 + n % 3) + n % 5) for n in range(64)]
    one, many = io.BytesIO(), CountingFile()
    w1 = PcapngWriter(one, byte_order=byte_order)
    w2 = PcapngWriter(many, byte_order=byte_order)
    w1.add_interface(1, tsresol=tsresol)
    w2.add_interface(1, tsresol=tsresol)
    for data, ts, orig in packets:
        w1.write_packet(0, data, ts, original_length=orig)
    before = many.writes
    assert w2.write_packets(0, packets) == len(packets)
    assert many.writes == before + 1
    assert many.getvalue() == one.getvalue()
    many.seek(0)
    got = [ev for ev in read(many) if isinstance(ev, Packet)]
    assert [(p.data, p.original_length) for p in got] == [(d, o) for d, _, o in packets]


def test_write_packets_empty_and_unknown_interface() -> None:
    f = CountingFile()
    w = PcapngWriter(f)
    with pytest.raises(ValueError):
        w.write_packets(0, [])
    w.add_interface()
    before = f.writes
    assert w.write_packets(0, []) == 0 and f.writes == before
