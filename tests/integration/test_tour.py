import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from wirekit.tour import Narrator, run_tour


def _tour(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wirekit", "tour", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def test_tour_runs_every_section_and_exits_0(tmp_path: Path) -> None:
    pcap = tmp_path / "tour.pcapng"
    done = _tour("--record", str(pcap), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "GET TIME" in out
    assert "HTTP/1.0 200 OK" in out
    assert "udp://127.0.0.1:" in out
    # TLS: the time over verified TLS, chain and verdict, the handshake, a refusal
    out = " ".join(out.split())  # rich wraps long lines at the terminal's width
    assert "listening on tls://127.0.0.1:" in out
    assert "TLSv1.3 with TLS_" in out
    assert "verdict: verified" in out
    assert "ClientHello: offers" in out and "TLS_AES_128_GCM_SHA256" in out
    assert "ServerHello: chooses TLS_" in out
    for message in ("EncryptedExtensions", "CertificateVerify", "Finished", "NewSessionTicket"):
        assert f"server {message}" in out
    assert "self-signed ('localhost')" in out and "verdict: self_signed" in out
    _check_forwarding(out)
    _check_ssh(out)
    _check_inspection(out, pcap)
    assert "✗" not in out
    assert "skipped" not in out
    assert "All 7 sections worked" in out
    assert [p.name for p in tmp_path.iterdir()] == ["tour.pcapng"]  # nothing else written


def _check_inspection(out: str, pcap: Path) -> None:
    assert f"recording to {pcap}" in out
    assert "Inspection: what went over the wire" in out
    assert f"wirekit inspect {pcap}" in out
    # the inspection's report: the conversation table, the GET, both TLS handshakes
    assert re.search(r"\d+ packets, 5 conversations", out), out
    assert "HTTP tcp 1: GET / -> 200 OK" in out
    assert "ServerHello TLS 1.3 TLS_" in out and "ServerHello TLS 1.2 TLS_ECDHE_" in out
    assert re.search(r"ClientHello SNI=localhost ALPN=- version=TLS 1.3 offered \d+ suites: "
                     r"TLS_AES_", out), out
    assert re.search(r"NewSessionTicket lifetime=\d+s \d+ bytes", out), out
    assert "DATA udp 0: first bytes each way" in out
    # and the section's checks against what the tour did
    for line in ("time server :", "http server :", "GET / -> 200 OK,", "UDP :",
                 "TLS 1.2 in clear: Certificate CN=localhost"):
        assert f"✓ {line}" in out, line
    assert re.search(r"✓ TLS from :\d+: the ClientHello offers \d+ suites, the ServerHello "
                     r"chooses TLS_AES_\w+ \(TLS 1\.3\)", out), out
    assert f"wireshark {pcap}" in out and f"tshark -r {pcap} -Y http" in out

    done = subprocess.run([sys.executable, "-m", "wirekit", "inspect", "--json", str(pcap)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    convs = doc["conversations"]
    assert sorted(c["proto"] for c in convs) == ["tcp"] * 4 + ["udp"]
    assert all(c["opened"] == "handshake" and c["closed"] == "fin"
               for c in convs if c["proto"] == "tcp")
    assert [c["app"] for c in convs if c["proto"] == "tcp"].count("tls") == 2
    udp = next(c for c in convs if c["proto"] == "udp")
    assert udp["packets"]["client_to_server"] == 1 and udp["packets"]["server_to_client"] == 1
    assert [(h["method"], h["uri"], h["status"]) for h in doc["http"]] == [("GET", "/", 200)]
    versions = sorted(t["server_hello"]["version"] for t in doc["tls"])
    assert versions == ["TLS 1.2", "TLS 1.3"]
    for t in doc["tls"]:
        assert t["server_hello"]["cipher_suite"] in t["client_hello"]["cipher_suites"]
    tls12 = next(t for t in doc["tls"] if t["server_hello"]["version"] == "TLS 1.2")
    assert tls12["new_session_ticket"] is not None and tls12["certificates"]


def test_tour_records_to_the_current_directory_by_default(tmp_path: Path) -> None:
    done = _tour("--only", "UDP:", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    pcap = tmp_path / "wirekit-tour.pcapng"
    assert f"recording to {pcap}" in " ".join(done.stdout.split())
    assert pcap.stat().st_size > 0
    doc = json.loads(subprocess.run(
        [sys.executable, "-m", "wirekit", "inspect", "--json", str(pcap)],
        capture_output=True, text=True, timeout=60, check=True).stdout)
    assert [c["proto"] for c in doc["conversations"]] == ["udp"]


def test_tour_no_record_writes_nothing_and_skips_the_inspection(tmp_path: Path) -> None:
    done = _tour("--no-record", "--only", "Inspection", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped: the tour ran with --no-record" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_tour_only_unknown_section_fails(tmp_path: Path) -> None:
    done = _tour("--only", "no-such-section", "--no-record", cwd=tmp_path)
    assert done.returncode == 1
    assert "no section matches" in done.stdout


def _check_forwarding(out: str) -> None:
    # the service's reply came through the forward, the per-connection line, the tap
    assert "the service answered through the forward:" in out
    line = re.search(r"127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+ closed: 11 B up, (\d+) B down", out)
    assert line, out
    assert int(line.group(1)) > 0
    assert ">> 8 B 'GET TIME'" in out and ">> 3 B 'END'" in out
    assert re.search(r"<< \d+ B '\w{3} \w{3} ", out), "the tapped reply, in clear"
    assert "<< EOF" in out and ">> EOF" in out


def _check_ssh(out: str) -> None:
    assert "listening on ssh://127.0.0.1:" in out
    fingerprint = re.search(r"host key (SHA256:\S+)", out)
    assert fingerprint, out
    assert "trusted new host key for 127.0.0.1:" in out
    assert out.count(fingerprint.group(1)) >= 2  # printed by sshd, trusted by the tunnel
    assert re.search(r"forwarding 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+ via ssh://tour@", out)
    assert "the time service answered through SSH:" in out
    assert re.search(r">> \d+ B 'SSH-2\.0-", out), "the SSH banner, in clear"
    assert re.search(r"[<>]{2} \d+ B hex [0-9a-f]{2} ", out), "ciphertext rows"
    assert "'GET TIME' and the time appear nowhere in its" in out
    assert "service leg: 'GET TIME' and the time in clear" in out


def test_tour_sections_in_order() -> None:
    from wirekit.tour import SECTIONS

    titles = [title.split(":")[0] for title, _ in SECTIONS()]
    order = [titles.index(name) for name in ("TCP", "Forwarding", "TLS", "SSH")]
    assert order == sorted(order)
    assert titles[-1] == "Inspection"


async def test_tour_inspection_skips_when_nothing_was_recorded(tmp_path: Path) -> None:
    from wirekit.tour.recording import TourRecording

    recording = TourRecording.start(tmp_path / "empty.pcapng")
    try:
        buffer = io.StringIO()
        narrator = Narrator(Console(file=buffer, width=200), recording=recording)
        result = await run_tour(narrator, only="Inspection")
    finally:
        recording.close()
    assert result.skipped and not result.failed and result.ok
    assert "skipped: no section recorded anything" in buffer.getvalue()


async def test_tour_ssh_section_skips_without_asyncssh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncssh", None)  # import asyncssh -> ImportError
    buffer = io.StringIO()
    result = await run_tour(Narrator(Console(file=buffer, width=200)), only="SSH:")
    assert result.skipped and not result.failed and not result.passed
    assert result.ok
    assert "skipped: asyncssh is not installed" in buffer.getvalue()
