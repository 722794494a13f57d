"""The directly written compact JSON report equals ``json.dumps`` of the report document."""

from __future__ import annotations

import json
from pathlib import Path

from wirekit.dissect.dns import build_query
from wirekit.dissect.summary import Summary
from wirekit.pcapng import PcapngWriter
from wirekit.pcapng.reader import open_buffer
from wirekit.pcapng.synth import TcpFlow, udp_frame
from wirekit.report.inspect import HttpJson, summary_json, summary_json_text


def _capture(path: Path) -> None:
    frames: list[bytes] = []
    web = TcpFlow(("127.0.0.1", 50000), ("127.0.0.1", 8000))
    frames += web.handshake()
    frames += web.send("c", b'GET /a"b\\c\xe9 HTTP/1.1\r\nHost: d\xe9mo\r\nX-Q: "q"\r\n\r\n'
                       b"HEAD / HTTP/1.1\r\n\r\n")
    frames += web.send("s", b"HTTP/1.1 200 \xc3\xa9t\xe9\r\nContent-Length: 3\r\n\r\nabc")
    frames += web.close()
    midstream = TcpFlow(("::1", 50001), ("::1", 9000))
    frames += midstream.send("s", b"HTTP/1.1 200 OK\r\n\r\n")
    data = TcpFlow(("127.0.0.2", 50002), ("127.0.0.1", 9001))
    frames += data.handshake() + data.send("c", b"\x00\x01") + data.reset()
    frames.append(udp_frame(("127.0.0.1", 5353), ("127.0.0.1", 53), build_query(9, "a.test")))
    with open(path, "wb") as f:
        w = PcapngWriter(f)
        w.add_interface(name="lo")
        for i, frame in enumerate(frames):
            w.write_packet(0, frame, 1_700_000_000_123_456_789 + i * 1_234)


def test_text_equals_compact_dumps(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    _capture(path)
    for app in (True, False):
        summary = Summary(app=app)
        with open(path, "rb") as f:
            summary.run(open_buffer(f))
        doc = summary_json(summary)
        if app:
            assert doc["http"] and doc["dns"] and doc["conversations"][0]["app"] == "http"
        assert "".join(summary_json_text(summary)) == json.dumps(doc, separators=(",", ":"))


def test_http_encoded_as_found_gives_the_same_text(tmp_path: Path) -> None:
    """The CLI's compact path: HTTP exchanges go to an HttpJson sink instead of dicts."""
    path = tmp_path / "c.pcapng"
    _capture(path)
    sink = HttpJson()
    plain, sunk = Summary(), Summary(on_http=sink)
    for summary in (plain, sunk):
        with open(path, "rb") as f:
            summary.run(open_buffer(f))
    assert len(sink.texts) == len(plain.http) >= 2 and not sunk.http
    expected = json.dumps(summary_json(plain), separators=(",", ":"))
    assert "".join(summary_json_text(sunk, sink)) == expected


def test_a_capture_starting_at_time_zero_keeps_relative_starts(tmp_path: Path) -> None:
    path = tmp_path / "zero.pcapng"
    a = TcpFlow(("127.0.0.1", 50000), ("127.0.0.1", 8000))
    b = TcpFlow(("127.0.0.1", 50001), ("127.0.0.1", 8000))
    with open(path, "wb") as f:
        w = PcapngWriter(f)
        w.add_interface(name="lo")
        for i, frame in enumerate(a.handshake()):
            w.write_packet(0, frame, i)  # the first packet at the epoch itself
        for i, frame in enumerate(b.handshake()):
            w.write_packet(0, frame, 5_000_000_000 + i)
    summary = Summary()
    with open(path, "rb") as f:
        summary.run(open_buffer(f))
    doc = summary_json(summary)
    assert [c["start"] for c in doc["conversations"]] == [0.0, 5.0]
    assert json.loads("".join(summary_json_text(summary))) == doc
