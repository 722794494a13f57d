"""atheris harness: the whole offline dissection (link/IP/TCP/UDP, conversations,
reassembly, HTTP, TLS, DNS) on a pcapng file whose frames are the fuzzer's bytes.

    python fuzz/fuzz_summary.py -max_total_time=60
"""

from __future__ import annotations

import contextlib
import io
import sys

import atheris

with atheris.instrument_imports():
    from wirekit.dissect.summary import Summary
    from wirekit.errors import ParseError
    from wirekit.pcapng import PcapngWriter


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    linktype = fdp.PickValueInList([0, 1, 101, 113, 228, 229, 276])
    out = io.BytesIO()
    w = PcapngWriter(out, flush=False)
    w.add_interface(linktype)
    while fdp.remaining_bytes():
        w.write_packet(0, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 400)), 0)
    with contextlib.suppress(ParseError):
        Summary(follow=("tcp", 0), on_packet=lambda line: None).run(out.getvalue())


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
