import io
import re
import subprocess
import sys

import pytest
from rich.console import Console

from wirekit.tour import Narrator, run_tour


def _tour(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wirekit", "tour", *args],
                          capture_output=True, text=True, timeout=120)


def test_tour_runs_every_section_and_exits_0() -> None:
    done = _tour()
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
    assert "✗" not in out
    assert "sections worked" in out


def test_tour_only_unknown_section_fails() -> None:
    done = _tour("--only", "no-such-section")
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


async def test_tour_ssh_section_skips_without_asyncssh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncssh", None)  # import asyncssh -> ImportError
    buffer = io.StringIO()
    result = await run_tour(Narrator(Console(file=buffer, width=200)), only="SSH:")
    assert result.skipped and not result.failed and not result.passed
    assert result.ok
    assert "skipped: asyncssh is not installed" in buffer.getvalue()
