"""atheris harness: the HTTP/1.x parser, both roles, fed in fuzzer-chosen pieces.

    python fuzz/fuzz_http1.py -max_total_time=60
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from wirekit.dissect.http1 import HttpParser
    from wirekit.errors import ParseError


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    parser = HttpParser(fdp.PickValueInList(["request", "response"]))
    parser.expect(fdp.PickValueInList(["GET", "HEAD", "CONNECT"]))
    try:
        while fdp.remaining_bytes():
            parser.feed(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 64)))
            list(parser.events())
        list(parser.close())
    except ParseError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
