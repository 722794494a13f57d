"""``wirekit inspect`` end to end (in process through ``main``): text, JSON, follow, damage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wirekit.cli.main import main
from wirekit.dissect.dns import build_query
from wirekit.pcapng import PcapngWriter
from wirekit.pcapng.synth import TcpFlow, udp_frame

GET = b"GET /index.html HTTP/1.1\r\nHost: demo\r\n\r\n"
OK = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample.pcapng"
    flow = TcpFlow(("127.0.0.1", 50000), ("127.0.0.1", 8000))
    frames = flow.handshake() + flow.send("c", GET) + flow.send("s", OK) + flow.close()
    bin_flow = TcpFlow(("127.0.0.1", 50001), ("127.0.0.1", 9000))
    frames += bin_flow.handshake() + bin_flow.send("c", b"\x00\x01\x02binary") + bin_flow.reset()
    frames.append(udp_frame(("127.0.0.1", 5353), ("127.0.0.1", 53), build_query(9, "a.test")))
    with open(path, "wb") as f:
        w = PcapngWriter(f)
        w.add_interface(name="lo")
        for i, frame in enumerate(frames):
            w.write_packet(0, frame, 1_700_000_000_000_000_000 + i * 1000)
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["inspect", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_text_report(sample: Path, capsys) -> None:
    code, out, err = run(capsys, str(sample))
    assert code == 0, err
    assert "17 packets, 3 conversations" in out
    assert "127.0.0.1:50000  127.0.0.1:8000" in out
    assert "HTTP  tcp 0: GET /index.html -> 404 Not Found (9 body bytes)" in out
    assert "DNS   udp 0: query 0x0009 A a.test" in out
    assert "DATA  tcp 1" in out and "|...binary|" in out
    assert "rst" in out


def test_json_schema(sample: Path, capsys) -> None:
    code, out, _ = run(capsys, str(sample), "--json")
    assert code == 0
    doc = json.loads(out)
    assert set(doc) >= {"packets", "conversations", "tls", "http", "dns", "error"}
    assert doc["packets"] == 17 and doc["error"] is None
    convs = doc["conversations"]
    assert [(c["proto"], c["id"], c["opened"], c["closed"], c["app"]) for c in convs] == [
        ("tcp", 0, "handshake", "fin", "http"), ("tcp", 1, "handshake", "rst", "data"),
        ("udp", 0, None, None, "dns")]
    first = convs[0]
    assert {"id", "proto", "client", "server", "packets", "bytes", "opened", "closed",
            "app"} <= set(first)
    assert first["packets"] == {"client_to_server": 6, "server_to_client": 4, "total": 10}
    assert [(h["conversation"], h["method"], h["uri"], h["status"]) for h in doc["http"]] == [
        (0, "GET", "/index.html", 404)]
    assert doc["dns"][0]["questions"] == [{"name": "a.test", "type": "A"}]


def test_follow_text_hex_and_json(sample: Path, capsys) -> None:
    code, out, _ = run(capsys, str(sample), "--follow", "0")
    assert code == 0
    assert ">> client 40 bytes at offset 0" in out and "GET /index.html HTTP/1.1" in out
    assert "<< server 54 bytes at offset 0" in out
    code, out, _ = run(capsys, str(sample), "--follow", "tcp:1", "--hex")
    assert code == 0 and "00 01 02 62 69 6e 61 72" in out
    code, out, _ = run(capsys, str(sample), "--follow", "0", "--json")
    chunks = json.loads(out)["follow"]["chunks"]
    assert bytes.fromhex(chunks[0]["data"]) == GET and bytes.fromhex(chunks[1]["data"]) == OK


def test_packets_lines(sample: Path, capsys) -> None:
    code, out, _ = run(capsys, str(sample), "--packets")
    assert code == 0
    lines = out.splitlines()
    assert "50000 → 8000 [SYN] Seq=0" in lines[0] and " DNS " in lines[16]


@pytest.mark.parametrize("cut", [30, 7, 200])
def test_damaged_file_reports_then_exits_1(sample: Path, tmp_path: Path, capsys,
                                           cut: int) -> None:
    data = sample.read_bytes()
    damaged = tmp_path / "damaged.pcapng"
    # cut 200: a block whose length field is impossible (13, not a multiple of 4)
    damaged.write_bytes(data[:-cut] if cut != 200 else data + b"\x06\0\0\0\x0d\0\0\0" + bytes(8))
    code, out, err = run(capsys, str(damaged))
    assert code == 1
    assert "packets" in out  # everything readable was reported
    (line,) = err.strip().splitlines()
    assert line.startswith("wirekit: error: capture damaged after") and "offset" in line
    code, out, _ = run(capsys, str(damaged), "--json")
    assert code == 1 and json.loads(out)["error"]["offset"] is not None


def test_usage_errors(sample: Path, tmp_path: Path, capsys) -> None:
    assert run(capsys, str(sample), "--follow", "7")[0] == 2
    assert run(capsys, str(sample), "--follow", "x")[0] == 2
    assert run(capsys, str(sample), "--hex")[0] == 2
    code, _, err = run(capsys, str(tmp_path / "missing.pcap"))
    assert code == 2 and "Traceback" not in err
    (tmp_path / "junk").write_bytes(b"hello world, not a capture")
    code, _, err = run(capsys, str(tmp_path / "junk"))
    assert code == 1 and "not a pcap or pcapng" in err


def test_help_has_examples() -> None:
    proc = subprocess.run([sys.executable, "-m", "wirekit", "inspect", "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and "Examples:" in proc.stdout
    assert "wirekit inspect web.pcapng --follow 0" in proc.stdout


def test_no_app_gives_the_same_conversations_without_analysis(sample: Path, capsys) -> None:
    full = json.loads(run(capsys, str(sample), "--json")[1])
    code, out, _ = run(capsys, str(sample), "--json", "--no-app")
    bare = json.loads(out)
    assert code == 0 and bare["http"] == [] and bare["dns"] == []
    strip = [{k: v for k, v in c.items() if k not in ("app", "app_detail")}
             for c in full["conversations"]]
    assert [{k: v for k, v in c.items() if k not in ("app", "app_detail")}
            for c in bare["conversations"]] == strip
    assert {c["app"] for c in bare["conversations"]} == {None}
