"""``wirekit.capture.bpf``: tcpdump -ddd parsing, the loopback prefix, packing."""

from __future__ import annotations

import struct

import pytest

from wirekit.capture import bpf
from wirekit.errors import UsageError

DDD = "4\n40 0 0 12\n21 0 1 2048\n6 0 0 262144\n6 0 0 0\n"


def test_parse_ddd() -> None:
    assert bpf.parse_ddd(DDD) == [(40, 0, 0, 12), (21, 0, 1, 2048), (6, 0, 0, 262144),
                                  (6, 0, 0, 0)]


@pytest.mark.parametrize("text", ["", "3\n40 0 0 12\n", "x\n", "1\n40 0 0\n"])
def test_parse_ddd_rejects_garbage(text: str) -> None:
    with pytest.raises(UsageError):
        bpf.parse_ddd(text)


def test_empty_filter_accepts_snaplen_bytes_without_a_compiler() -> None:
    assert bpf.compile_filter("  ", snaplen=96) == [(6, 0, 0, 96)]


def test_reject_outgoing_prefix_keeps_the_program() -> None:
    program = bpf.parse_ddd(DDD)
    prefixed = bpf.reject_outgoing(program)
    assert prefixed[3:] == program
    load, jump, drop = prefixed[:3]
    assert load == (0x20, 0, 0, 0xFFFFF004)  # ld [SKF_AD_OFF + SKF_AD_PKTTYPE]
    assert jump == (0x15, 0, 1, 4)  # jeq PACKET_OUTGOING -> next (drop), else skip it
    assert drop == (0x06, 0, 0, 0)


def test_pack_program() -> None:
    packed = bpf.pack_program([(6, 0, 0, 96)])
    assert packed == struct.pack("=HBBI", 6, 0, 0, 96) and len(packed) == 8
    with pytest.raises(UsageError):
        bpf.pack_program([])


def test_no_compiler_says_how_to_get_one(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pcapy", None)  # import pcapy -> ImportError
    monkeypatch.setattr(bpf.shutil, "which", lambda name: None)
    with pytest.raises(UsageError, match=r"pip install 'wirekit\[capture\]'.*tcpdump"):
        bpf.compile_filter("tcp port 80")
