import subprocess
import sys


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
    assert "✗" not in out
    assert "sections worked" in out


def test_tour_only_unknown_section_fails() -> None:
    done = _tour("--only", "no-such-section")
    assert done.returncode == 1
    assert "no section matches" in done.stdout
