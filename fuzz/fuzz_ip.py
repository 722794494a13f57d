"""atheris harness: link, IPv4/IPv6, TCP and UDP header decoding (the lazy Frame).

    python fuzz/fuzz_ip.py -max_total_time=60
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from wirekit.dissect.ip import decode_frame
    from wirekit.dissect.reassembly import Reassembler
    from wirekit.errors import ParseError


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    linktype = fdp.PickValueInList([0, 1, 101, 108, 113, 228, 229, 276])
    frame = decode_frame(linktype, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200)))
    with contextlib.suppress(ParseError):
        _ = frame.ip, frame.tcp, frame.udp, frame.payload
    r = Reassembler(fdp.ConsumeIntInRange(0, 2**32 - 1), limit=4096)
    while fdp.remaining_bytes() > 4:
        r.add(fdp.ConsumeIntInRange(0, 2**32 - 1), fdp.ConsumeBytes(16))


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
