from wirekit.report.hexdump import chunk_header, hexdump


def test_hexdump_canonical() -> None:
    out = hexdump(b"GET / HTTP/1.0\r\n\r\n")
    lines = out.splitlines()
    assert lines[0].startswith("00000000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 30 0d 0a")
    assert lines[0].endswith("|GET / HTTP/1.0..|")
    assert lines[1].startswith("00000010  0d 0a")
    assert hexdump(b"") == ""
    assert hexdump(b"A", offset=32).startswith("00000020  41")


def test_chunk_header() -> None:
    assert chunk_header(">>", 0, 8, 0.0012) == ">> sent 8 bytes at offset 0 (+0.001s)"
    assert chunk_header("<<", 8, 3, 1.0).startswith("<< received 3 bytes")
