"""(Named ``..._openssl`` because pytest's default import mode cannot collect two test
files with the same basename: tests/integration/test_tls_connect_serve.py exists.)

``openssl s_client`` against ``wirekit serve ... tls://`` and ``wirekit connect tls://``
against ``openssl s_server``: TLS 1.3 and 1.2, trusted / untrusted / wrong-name server
certificates, mutual TLS with good and bad client certificates.  Keys are made here.
"""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PKI, free_port, need_peer

pytestmark = pytest.mark.peer("openssl")

HTTP_GET = r"GET / HTTP/1.0\r\n\r\n"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def s_server() -> Iterator[object]:
    openssl = need_peer("openssl")
    procs: list[subprocess.Popen[bytes]] = []

    def start(cert: tuple[Path, Path], *extra: str) -> int:
        for _attempt in range(5):
            port = free_port()  # someone may take it before s_server binds: retry
            proc = subprocess.Popen(
                [openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert[0]),
                 "-key", str(cert[1]), "-www", "-quiet", *extra],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append(proc)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                if _accepts(port):
                    return port
                time.sleep(0.02)
            if proc.poll() is None:
                pytest.fail("openssl s_server did not accept connections within 10 s")
        pytest.fail("no free port for openssl s_server after 5 tries")

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        if proc.stderr:
            proc.stderr.close()


def connect(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "wirekit", "connect", *args, "--no-stdin",
                           "--send", HTTP_GET, "--timeout", "10"],
                          capture_output=True, timeout=30)


def one_line(result: subprocess.CompletedProcess[bytes]) -> str:
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(("args", "version"), [((), "TLSv1.3"),
                                               (("--max-version", "1.2"), "TLSv1.2")])
def test_connect_verifies_s_server(s_server, pki: PKI, args: tuple[str, ...],
                                   version: str) -> None:
    port = s_server(pki.server)
    result = connect(f"tls://localhost:{port}", "--ca", str(pki.ca), *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"HTTP/1.0 200 ok")
    # s_server -www reports the protocol it negotiated in its page, too
    assert f"Protocol  : {version}".encode() in result.stdout
    assert f"({version}, " in result.stderr.decode()


@pytest.mark.parametrize(
    ("which", "chain", "expected"),
    [
        ("self_signed", False, "the certificate is self-signed ('localhost') and is not in "
                               "the roots in"),
        ("stranger_server", True, "the chain ends at root 'Stranger Root', which is not in "
                                  "the roots in"),
        ("wrong_host", False, "'localhost' is not in the certificate's names: other.test"),
    ],
)
def test_connect_refuses_with_the_reason(s_server, pki: PKI, which: str, chain: bool,
                                         expected: str) -> None:
    extra = ("-cert_chain", str(pki.stranger_root)) if chain else ()
    port = s_server(getattr(pki, which), *extra)
    result = connect(f"tls://localhost:{port}", "--ca", str(pki.ca))
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith(f"wirekit: error: certificate of localhost:{port} not trusted: ")
    assert expected in line
    assert result.stdout == b""  # nothing was sent to an untrusted server's reply


def test_connect_with_client_certificate_to_s_server(s_server, pki: PKI) -> None:
    port = s_server(pki.server, "-Verify", "1", "-CAfile", str(pki.ca))
    good = connect(f"tls://localhost:{port}", "--ca", str(pki.ca), "--cert",
                   str(pki.client[0]), "--key", str(pki.client[1]))
    assert good.returncode == 0 and good.stdout.startswith(b"HTTP/1.0 200 ok"), good.stderr
    missing = connect(f"tls://localhost:{port}", "--ca", str(pki.ca))
    assert missing.returncode == 1
    # TLS 1.3: our handshake is over before the server checks; its alert ends the session.
    last = missing.stderr.decode().strip().splitlines()[-1]
    assert last.startswith(f"wirekit: error: TLS error with 127.0.0.1:{port}: ")
    assert "the server requires a client certificate (give --cert/--key)" in last


# -- wirekit serve, with openssl s_client as the client -----------------------------------


def s_client(port: int, *args: str, payload: bytes = b"wirekit-interop\n",
             ) -> tuple[bytes, str]:
    """Send ``payload``, wait (bounded) for it to come back or for s_client to end."""
    openssl = need_peer("openssl")
    proc = subprocess.Popen([openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-brief",
                             *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    out = b""
    try:
        proc.stdin.write(payload)
        proc.stdin.flush()
        deadline = time.monotonic() + 15
        while payload not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.1)
            if ready:
                chunk = proc.stdout.read1(65536)  # type: ignore[attr-defined]
                if not chunk:
                    break
                out += chunk
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    return out, err.decode(errors="replace")


@pytest.mark.parametrize(("args", "version"), [((), "TLSv1.3"), (("-tls1_2",), "TLSv1.2")])
def test_s_client_against_serve_echo(wirekit_proc, pki: PKI, args: tuple[str, ...],
                                     version: str) -> None:
    server = wirekit_proc("serve", "echo", "tls://:0", "--cert", str(pki.server[0]), "--key",
                          str(pki.server[1]))
    _, _, port = server.listening()
    out, err = s_client(port, "-CAfile", str(pki.ca), "-verify_return_error",
                        "-verify_hostname", "localhost", "-servername", "localhost", *args)
    assert out == b"wirekit-interop\n", err
    assert f"Protocol version: {version}" in err
    assert "Verification: OK" in err


def test_s_client_against_on_the_fly_certificate(wirekit_proc, tmp_path: Path) -> None:
    server = wirekit_proc("serve", "echo", "tls://:0", "--ca-dir", str(tmp_path / "ca"))
    _, _, port = server.listening()
    ca = server.wait_line(r"clients trust it with: --ca (\S+)").group(1)
    out, err = s_client(port, "-CAfile", ca, "-verify_return_error", "-verify_hostname",
                        "localhost")
    assert out == b"wirekit-interop\n" and "Verification: OK" in err, err


def test_s_client_mutual_tls_reasons(wirekit_proc, pki: PKI) -> None:
    server = wirekit_proc("serve", "echo", "tls://:0", "--cert", str(pki.server[0]), "--key",
                          str(pki.server[1]), "--client-ca", str(pki.ca),
                          "--require-client-cert")
    _, _, port = server.listening()
    common = ("-CAfile", str(pki.ca), "-verify_return_error")
    out, err = s_client(port, *common, "-cert", str(pki.client[0]), "-key", str(pki.client[1]))
    assert out == b"wirekit-interop\n", err
    cases = [
        ((), "alert certificate required", r"TLS handshake failed: no client certificate"),
        (pki.client_expired, "alert certificate expired",
         r"TLS handshake failed: client certificate not trusted: certificate expired 3 days"),
        (pki.client_stranger, "alert unknown ca",
         r"TLS handshake failed: client certificate not trusted: .*'Stranger Root'"),
    ]
    for client, alert, logged in cases:
        args = ("-cert", str(client[0]), "-key", str(client[1])) if client else ()
        out, err = s_client(port, *common, *args)
        assert out == b"", err
        assert alert in err, err  # the client is told why: the server sent its alert
        server.wait_line(logged)
