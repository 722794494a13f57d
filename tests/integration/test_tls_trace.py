"""wirekit.tls.trace: a real handshake on loopback, traced message by message.

Servers: Python's ssl in a thread (in-process) and ``openssl s_server``; TLS 1.3 and 1.2.
The client reads once after the handshake so TLS 1.3 NewSessionTickets are processed.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import need_peer, wait_for
from wirekit.tls.trace import HandshakeTrace

TIMEOUT = 10.0

TLS13_SEQUENCE = [
    ("client", "ClientHello"),
    ("server", "ServerHello"),
    ("server", "EncryptedExtensions"),
    ("server", "Certificate"),
    ("server", "CertificateVerify"),
    ("server", "Finished"),
    ("client", "Finished"),
    ("server", "NewSessionTicket"),
]

TLS12_SEQUENCE = [
    ("client", "ClientHello"),
    ("server", "ServerHello"),
    ("server", "Certificate"),
    ("server", "ServerKeyExchange"),
    ("server", "ServerHelloDone"),
    ("client", "ClientKeyExchange"),
    ("client", "ChangeCipherSpec"),
    ("client", "Finished"),
    ("server", "ChangeCipherSpec"),
    ("server", "Finished"),
]


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("trace")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def client_context(cert: tuple[Path, Path], version: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cert[0]))
    ctx.maximum_version = ssl.TLSVersion[version]
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def pairs(trace: HandshakeTrace) -> list[tuple[str, str]]:
    return [(m["direction"], m["type"]) for m in trace.messages]


def check_trace(trace: HandshakeTrace, version: str) -> None:
    messages = trace.messages
    json.dumps(messages)  # JSON-ready
    assert all("error" not in m for m in messages), messages
    got = pairs(trace)
    if version == "TLSv1_3":
        flow = [p for p in got if p[1] != "ChangeCipherSpec"]
        assert flow[: len(TLS13_SEQUENCE)] == TLS13_SEQUENCE, got
        sh = next(m for m in messages if m["type"] == "ServerHello")
        assert sh["version"] == "TLS 1.3"
        assert sh["cipher_suite"] in ("TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256",
                                      "TLS_CHACHA20_POLY1305_SHA256")
        ee = next(m for m in messages if m["type"] == "EncryptedExtensions")
        alpn = [e for e in ee["extensions"]
                if e["name"] == "application_layer_protocol_negotiation"]
        assert alpn and alpn[0]["protocols"] == ["http/1.1"]
        nst = next(m for m in messages if m["type"] == "NewSessionTicket")
        assert nst["ticket_length"] > 0 and "age_add" in nst
    else:
        flow = [p for p in got if p[1] != "NewSessionTicket"]
        assert flow[: len(TLS12_SEQUENCE)] == TLS12_SEQUENCE, got
        assert ("server", "NewSessionTicket") in got
        sh = next(m for m in messages if m["type"] == "ServerHello")
        assert sh["version"] == "TLS 1.2" and sh["cipher_suite"].startswith("TLS_ECDHE_ECDSA_")
        ske = next(m for m in messages if m["type"] == "ServerKeyExchange")
        assert ske["kex"] == "ecdhe" and ske["group"] in ("x25519", "secp256r1")
    ch = messages[0]
    assert ch["type"] == "ClientHello" and ch["direction"] == "client"
    assert ch["sni"] == "localhost" and ch["alpn"] == ["http/1.1"]
    expected_suite = ("TLS_AES_128_GCM_SHA256" if version == "TLSv1_3"
                      else "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
    assert expected_suite in ch["cipher_suites"]
    offered = {e["name"] for e in ch["extensions"]}
    assert {"server_name", "signature_algorithms", "supported_groups"} <= offered
    assert ({"supported_versions", "key_share"} <= offered) == (version == "TLSv1_3")
    cert_msg = next(m for m in messages if m["type"] == "Certificate")
    assert [c["subject"] for c in cert_msg["certificates"]] == ["CN=localhost"]


# ------------------------------------------------------------------ in-process server


@pytest.fixture
def python_server(cert: tuple[Path, Path]) -> Iterator[tuple[int, HandshakeTrace]]:
    """A one-connection echo server in a thread; yields (port, the server's own trace)."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(*cert)
    sctx.set_alpn_protocols(["http/1.1"])
    server_trace = HandshakeTrace.attach(sctx)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            raw, _ = listener.accept()
            raw.settimeout(TIMEOUT)
            with sctx.wrap_socket(raw, server_side=True) as conn:
                conn.sendall(conn.recv(100))
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], server_trace
    finally:
        thread.join(TIMEOUT)
        listener.close()
        server_trace.detach()
    assert not errors, errors


@pytest.mark.parametrize("version", ["TLSv1_3", "TLSv1_2"])
def test_trace_against_python_server(python_server, cert, version: str) -> None:
    port, server_trace = python_server
    ctx = client_context(cert, version)
    trace = HandshakeTrace.attach(ctx)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(b"ping")
        assert conn.recv(100) == b"ping"
    check_trace(trace, version)
    # The server's own trace sees the same conversation from the other end.
    wait_for(lambda: len(server_trace.entries) >= len(trace.entries) - 1, TIMEOUT,
             "server trace")
    assert server_trace.types("client")[0] == "ClientHello"
    assert set(server_trace.types("server")) >= {"ServerHello", "Certificate", "Finished"}
    trace.detach()
    assert getattr(ctx, "_msg_callback", None) is None


def test_trace_never_breaks_the_connection(python_server, cert, monkeypatch) -> None:
    """A decoder bug is recorded as an error entry, not raised into the handshake."""
    port, _ = python_server

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("decoder bug")

    monkeypatch.setattr("wirekit.dissect.tls.decode_handshake", broken)
    ctx = client_context(cert, "TLSv1_3")
    trace = HandshakeTrace.attach(ctx)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(b"x")
        assert conn.recv(10) == b"x"
    first = trace.messages[0]
    assert first["type"] == "ClientHello" and first["error"] == "decoder bug"
    assert first["length"] > 100


def test_trace_sees_a_failed_handshake_alert(cert) -> None:
    """Untrusted certificate: the client's fatal alert is in the trace."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(*cert)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)

    def serve() -> None:
        raw, _ = listener.accept()
        raw.settimeout(TIMEOUT)
        try:
            sctx.wrap_socket(raw, server_side=True).close()
        except (ssl.SSLError, OSError):
            raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ctx = ssl.create_default_context()  # system roots: our self-signed cert is untrusted
    trace = HandshakeTrace.attach(ctx)
    with socket.create_connection(listener.getsockname(), timeout=TIMEOUT) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        ctx.wrap_socket(raw, server_hostname="localhost")
    thread.join(TIMEOUT)
    listener.close()
    alerts = [m for m in trace.messages if m["type"] == "Alert"]
    assert alerts and alerts[0]["direction"] == "client"
    assert alerts[0]["level"] == "fatal" and alerts[0]["description"] in ("unknown_ca",
                                                                         "bad_certificate")


# -------------------------------------------------------------------- openssl s_server


@pytest.fixture
def openssl_server(cert: tuple[Path, Path]):
    openssl = need_peer("openssl")
    started: list[subprocess.Popen[bytes]] = []

    def start(version_flag: str) -> int:
        proc = subprocess.Popen(
            [openssl, "s_server", "-accept", "127.0.0.1:0", "-cert", str(cert[0]),
             "-key", str(cert[1]), "-naccept", "1", "-www", "-alpn", "http/1.1",
             version_flag],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        started.append(proc)
        lines: list[str] = []

        def read_port() -> int | None:
            assert proc.stdout is not None
            line = proc.stdout.readline().decode(errors="replace")
            lines.append(line)
            m = re.search(r"ACCEPT .*:(\d+)", line)
            if m:
                return int(m.group(1))
            if not line and proc.poll() is not None:
                pytest.fail(f"openssl s_server exited: {''.join(lines)}")
            return None

        return wait_for(read_port, TIMEOUT, "openssl s_server ACCEPT line")

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize(("version", "flag"), [("TLSv1_3", "-tls1_3"), ("TLSv1_2", "-tls1_2")])
def test_trace_against_openssl_s_server(openssl_server, cert, version: str, flag: str) -> None:
    port = openssl_server(flag)
    ctx = client_context(cert, version)
    trace = HandshakeTrace.attach(ctx)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        body = b""
        while chunk := conn.recv(65536):
            body += chunk
    assert b"HTTP/1.0 200 ok" in body
    check_trace(trace, version)


async def test_trace_through_asyncio_streams(python_server, cert) -> None:
    """asyncio's TLS transport uses SSLObject: the same hook, the same trace."""
    import asyncio

    port, _ = python_server
    ctx = client_context(cert, "TLSv1_3")
    trace = HandshakeTrace.attach(ctx)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost"),
        TIMEOUT)
    try:
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.read(100), TIMEOUT) == b"ping"
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), TIMEOUT)
    check_trace(trace, "TLSv1_3")


def test_trace_limit_bounds_memory(python_server, cert) -> None:
    port, _ = python_server
    ctx = client_context(cert, "TLSv1_3")
    trace = HandshakeTrace.attach(ctx, limit=2)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(b"x")
        assert conn.recv(10) == b"x"
    assert trace.types() == ["ClientHello", "ServerHello"]
    assert trace.dropped >= 6
