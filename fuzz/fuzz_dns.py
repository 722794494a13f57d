"""atheris harness: DNS message parsing (names, compression pointers, records).

    python fuzz/fuzz_dns.py -max_total_time=60
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from wirekit.dissect.dns import parse_dns
    from wirekit.errors import ParseError


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_dns(data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
