"""atheris harness: the pcap/pcapng reader (sans-IO and fast path) on arbitrary bytes.

    python fuzz/fuzz_pcapng.py -max_total_time=60
Only ``ParseError`` may escape the parsers; anything else is a finding.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from wirekit.errors import ParseError
    from wirekit.pcapng import CaptureParser, Decoder


def test_one_input(data: bytes) -> None:
    parser = CaptureParser()
    try:
        parser.feed(data)
        list(parser.events())
        parser.close()
    except ParseError:
        pass
    with contextlib.suppress(ParseError):
        list(Decoder().raw_packets(data))


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
