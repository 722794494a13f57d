import io

import pytest

from wirekit.errors import ParseError
from wirekit.pcapng.reader import Decoder, read


def test_empty_capture_is_a_parse_error_on_every_path() -> None:
    with pytest.raises(ParseError, match="empty file"):
        list(Decoder().raw_packets(b""))
    with pytest.raises(ParseError, match="empty file"):
        list(read(io.BytesIO(b"")))


def test_inspect_of_an_empty_file_fails_with_one_line(tmp_path, capsys) -> None:
    from wirekit.cli.main import main

    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    assert main(["inspect", str(empty)]) == 1
    assert capsys.readouterr().err.strip().endswith(
        "empty file: not a pcap or pcapng capture (at offset 0)")
