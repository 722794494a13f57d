"""``connect tls://`` and ``serve ... tls://``, wirekit against wirekit: the library in
process, the CLI as subprocesses.  Every key and certificate is made in the test session.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import wirekit
from conftest import PKI, wait_for
from wirekit.errors import CertificateError, TLSError, UsageError
from wirekit.net.server import ConnectionEvent

# -- library ------------------------------------------------------------------------------


async def test_library_round_trip_verified(pki: PKI) -> None:
    cert, key = pki.server
    async with await wirekit.serve("echo", "tls://127.0.0.1:0", cert=cert, key=key) as server:
        assert server.address.scheme == "tls" and server.tls is not None
        port = server.address.port
        async with await wirekit.connect(f"tls://localhost:{port}", ca=pki.ca) as conn:
            sslobj = conn.writer.get_extra_info("ssl_object")
            assert sslobj.version() == "TLSv1.3"
            await conn.send(b"over tls\n")
            assert await conn.recvline(timeout=10) == b"over tls\n"
        async with await wirekit.connect(f"tls://127.0.0.1:{port}", ca=pki.ca,
                                         max_version="1.2") as conn:
            assert conn.writer.get_extra_info("ssl_object").version() == "TLSv1.2"


@pytest.mark.parametrize(
    ("which", "sni", "code", "words"),
    [
        ("self_signed", None, "self_signed", "self-signed"),
        ("wrong_host", None, "hostname_mismatch", "'localhost' is not in the certificate's "
                                                  "names: other.test"),
        ("server", "www.example.test", "hostname_mismatch", "'www.example.test' is not in"),
    ],
)
async def test_library_refusal_names_the_reason(pki: PKI, which: str, sni: str | None,
                                                code: str, words: str) -> None:
    cert, key = getattr(pki, which)
    async with await wirekit.serve("echo", "tls://127.0.0.1:0", cert=cert, key=key) as server:
        with pytest.raises(CertificateError) as info:
            await wirekit.connect(f"tls://localhost:{server.address.port}", ca=pki.ca, sni=sni)
    assert code in [v.code for v in info.value.verdicts]
    assert words in str(info.value)
    assert str(info.value).startswith(f"certificate of localhost:{server.address.port} not "
                                      "trusted: ")


async def test_library_system_roots_refuse_a_private_ca(pki: PKI) -> None:
    cert, key = pki.server
    async with await wirekit.serve("echo", "tls://127.0.0.1:0", cert=cert, key=key) as server:
        with pytest.raises(CertificateError, match="the system's trusted roots"):
            await wirekit.connect(f"tls://localhost:{server.address.port}")


async def test_library_no_sni_still_checks_the_name(pki: PKI) -> None:
    seen: list[str | None] = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pki.wrong_host)
    ctx.sni_callback = lambda _obj, name, _ctx: seen.append(name)  # type: ignore[assignment,func-returns-value]
    async with await wirekit.serve("echo", "tls://127.0.0.1:0", ssl=ctx) as server:
        with pytest.raises(CertificateError, match="'localhost' is not in"):
            await wirekit.connect(f"tls://localhost:{server.address.port}", ca=pki.ca,
                                  no_sni=True)
        # --insecure connects (and is the only way to)
        conn = await wirekit.connect(f"tls://localhost:{server.address.port}", insecure=True)
        await conn.aclose()
    assert seen[0] is None  # no SNI was sent


async def test_library_own_context_and_usage_errors(pki: PKI) -> None:
    cert, key = pki.server
    async with await wirekit.serve("echo", "tls://127.0.0.1:0", cert=cert, key=key) as server:
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        async with await wirekit.connect(f"tls://127.0.0.1:{server.address.port}",
                                         ssl=ctx) as conn:
            await conn.send(b"x")
            assert await conn.recv_exactly(1, timeout=10) == b"x"
        with pytest.raises(UsageError, match="either ssl=CONTEXT or TLS options"):
            await wirekit.connect(f"tls://127.0.0.1:{server.address.port}", ssl=ctx,
                                  ca=pki.ca)
    with pytest.raises(UsageError, match="TLS options need a tls:// address"):
        await wirekit.connect("127.0.0.1:9", ca=pki.ca)
    with pytest.raises(UsageError, match="TLS options need a tls:// address"):
        await wirekit.serve("echo", "127.0.0.1:0", cert=cert, key=key)


async def test_library_on_the_fly_certificate(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    async with await wirekit.serve("echo", "tls://127.0.0.1:0", ca_dir=ca_dir) as server:
        assert server.tls is not None and server.tls.issued_by == (ca_dir / "ca.pem").resolve()
        assert {"localhost", "127.0.0.1"} <= set(server.tls.names)
        for host in ("localhost", "127.0.0.1"):
            async with await wirekit.connect(f"tls://{host}:{server.address.port}",
                                             ca=server.tls.issued_by) as conn:
                await conn.send(b"hi")
                assert await conn.recv_exactly(2, timeout=10) == b"hi"
    assert sorted(p.name for p in ca_dir.iterdir()) == ["ca-key.pem", "ca.pem"]  # no leaf left


async def _mtls_attempt(port: int, pki: PKI, client: tuple[Path, Path] | None) -> bytes:
    cert, key = client if client else (None, None)
    async with await wirekit.connect(f"tls://localhost:{port}", ca=pki.ca, cert=cert,
                                     key=key) as conn:
        await conn.send(b"ping")
        return await conn.recv_exactly(4, timeout=10)


async def test_library_mutual_tls_reasons(pki: PKI) -> None:
    events: list[ConnectionEvent] = []
    cert, key = pki.server
    async with await wirekit.serve("echo", "tls://127.0.0.1:0", cert=cert, key=key,
                                   client_ca=pki.ca, require_client_cert=True,
                                   on_event=events.append) as server:
        port = server.address.port
        assert await _mtls_attempt(port, pki, pki.client) == b"ping"
        for client in (None, pki.client_expired, pki.client_stranger):
            with pytest.raises(TLSError):  # the server's alert arrives with our first read
                await _mtls_attempt(port, pki, client)
        await asyncio.wait_for(_until(lambda: len(events) >= 4), 10)
    failed = [e.detail for e in events if e.ended == "tls failed"]
    assert len(failed) == 3, events
    assert failed[0] == "no client certificate (one is required)"
    assert failed[1].startswith("client certificate not trusted: certificate expired 3 days ago")
    assert "'Stranger Root'" in failed[2] and "not in the roots in" in failed[2]
    assert failed[2].startswith("client certificate not trusted: ")


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


async def test_library_version_mismatch_is_a_logged_failure(pki: PKI) -> None:
    events: list[ConnectionEvent] = []
    cert, key = pki.server
    async with await wirekit.serve("echo", "tls://127.0.0.1:0", cert=cert, key=key,
                                   max_version="1.2", on_event=events.append) as server:
        with pytest.raises(TLSError, match=r"TLS handshake with 127\.0\.0\.1:\d+ failed"):
            await wirekit.connect(f"tls://127.0.0.1:{server.address.port}", ca=pki.ca,
                                  min_version="1.3")
        await asyncio.wait_for(_until(lambda: bool(events)), 10)
    assert events[0].ended == "tls failed" and "version" in events[0].detail


# -- CLI ------------------------------------------------------------------------------------


def connect(*args: str, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "wirekit", "connect", *args], input=input,
                          capture_output=True, timeout=30)


def test_cli_serve_on_the_fly_and_connect(wirekit_proc, tmp_path: Path) -> None:
    server = wirekit_proc("serve", "daytime", "tls://:0", "--ca-dir", str(tmp_path / "ca"))
    _, _, port = server.listening()
    server.wait_line(r"created a local CA in ")
    m = server.wait_line(r"issued by the local CA (\S+); clients trust it with: --ca (\S+)")
    ca = m.group(2)
    assert Path(ca) == (tmp_path / "ca" / "ca.pem").resolve()
    result = connect(f"tls://localhost:{port}", "--ca", ca, "--no-stdin")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(b"\r\n") and len(result.stdout) > 10
    status = result.stderr.decode()
    assert "TLSv1.3" in status and "certificate verified" in status
    # Without --ca: the system's roots do not know the local CA -> exit 1, one line.
    refused = connect(f"tls://localhost:{port}", "--no-stdin")
    assert refused.returncode == 1
    lines = refused.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"wirekit: error: certificate of localhost:{port} not trusted: "), lines
    # --insecure connects, and says so.
    insecure = connect(f"tls://localhost:{port}", "--insecure", "--no-stdin",
                       "--max-version", "1.2")
    assert insecure.returncode == 0
    text = insecure.stderr.decode()
    assert "warning: --insecure" in text and "NOT verified" in text and "TLSv1.2" in text
    server.wait_line(r"127\.0\.0\.1:\d+ server closed")


def test_cli_mutual_tls(wirekit_proc, pki: PKI) -> None:
    cert, key = pki.server
    server = wirekit_proc("serve", "daytime", "tls://:0", "--cert", str(cert), "--key",
                          str(key), "--client-ca", str(pki.ca), "--require-client-cert")
    _, _, port = server.listening()
    good = connect(f"tls://localhost:{port}", "--ca", str(pki.ca), "--cert", str(pki.client[0]),
                   "--key", str(pki.client[1]), "--no-stdin")
    assert good.returncode == 0 and good.stdout.endswith(b"\r\n"), good.stderr
    for client, told in ((None, "the server requires a client certificate"),
                         (pki.client_expired, "our client certificate: it has expired"),
                         (pki.client_stranger, "it does not trust its issuer")):
        args = ["--cert", str(client[0]), "--key", str(client[1])] if client else []
        bad = connect(f"tls://localhost:{port}", "--ca", str(pki.ca), *args, "--no-stdin")
        assert bad.returncode == 1
        last = bad.stderr.decode().strip().splitlines()[-1]
        assert last.startswith(f"wirekit: error: TLS error with 127.0.0.1:{port}: "), last
        assert told in last, last
    server.wait_line(r"TLS handshake failed: no client certificate")
    server.wait_line(r"TLS handshake failed: client certificate not trusted: certificate "
                     r"expired 3 days ago")
    server.wait_line(r"TLS handshake failed: client certificate not trusted: .*'Stranger Root'")


def test_cli_json_events_and_usage(wirekit_proc, pki: PKI, tmp_path: Path) -> None:
    cert, key = pki.server
    server = wirekit_proc("serve", "echo", "tls://:0", "--cert", str(cert), "--key", str(key),
                          "--min-version", "1.3", "--json")
    _, _, port = server.listening()
    old = connect(f"tls://127.0.0.1:{port}", "--ca", str(pki.ca), "--max-version", "1.2",
                  "--no-stdin")
    assert old.returncode == 1 and b"TLS handshake with 127.0.0.1" in old.stderr
    assert server.stop() == 0
    events = [json.loads(line) for line in server.proc.stdout.read().decode().splitlines()]
    assert events[0]["event"] == "listening" and "ca" not in events[0]
    assert events[1]["ended"] == "tls failed" and events[1]["scheme"] == "tls"
    for args, message in [
        (["tls://:1", "--sni", "a", "--no-sni"], "--sni and --no-sni contradict"),
        (["127.0.0.1:1", "--ca", str(pki.ca)], "TLS options need a tls:// address"),
        (["tls://:1", "--cert", str(tmp_path / "none.pem")], "cannot read"),
    ]:
        result = connect(*args, "--no-stdin")
        assert result.returncode == 2, result.stderr
        lines = result.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines


def test_cli_keylog(wirekit_proc, pki: PKI, tmp_path: Path) -> None:
    cert, key = pki.server
    server = wirekit_proc("serve", "daytime", "tls://:0", "--cert", str(cert), "--key", str(key))
    _, _, port = server.listening()
    keylog = tmp_path / "keys.log"
    result = connect(f"tls://localhost:{port}", "--ca", str(pki.ca), "--keylog", str(keylog),
                     "--no-stdin")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: keylog.exists() and b"CLIENT_TRAFFIC_SECRET_0" in keylog.read_bytes())
    assert keylog.stat().st_mode & 0o777 == 0o600


def test_cli_stdin_end_keeps_reading_until_wait(wirekit_proc, pki: PKI) -> None:
    """TLS has no half-close to send at the end of stdin: the session keeps reading (like
    openssl s_client -quiet) and ends after --wait quiet seconds, or when the server closes."""
    cert, key = pki.server
    server = wirekit_proc("serve", "echo", "tls://:0", "--cert", str(cert), "--key", str(key))
    _, _, port = server.listening()
    result = connect(f"tls://localhost:{port}", "--ca", str(pki.ca), "--wait", "0.5", "-v",
                     input=b"line one\nline two\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"line one\nline two\n"
    assert "closed (idle)" in result.stderr.decode()


async def test_library_silent_client_times_out_and_shutdown_aborts_handshakes(pki: PKI) -> None:
    """A peer that never sends a ClientHello: the handshake timeout ends it with a reason;
    one still handshaking at shutdown is aborted after the grace period."""
    events: list[ConnectionEvent] = []
    cert, key = pki.server
    server = await wirekit.serve("echo", "tls://127.0.0.1:0", cert=cert, key=key,
                                 handshake_timeout=0.3, on_event=events.append)
    port = server.address.port
    _, w1 = await asyncio.open_connection("127.0.0.1", port)  # plain TCP, says nothing
    await asyncio.wait_for(_until(lambda: bool(events)), 10)
    assert (events[0].ended, events[0].detail) == ("tls failed", "the handshake timed out")
    assert server.active == 0
    slow = await wirekit.serve("echo", "tls://127.0.0.1:0", cert=cert, key=key,
                               on_event=events.append)
    _, w2 = await asyncio.open_connection("127.0.0.1", slow.address.port)
    await asyncio.wait_for(_until(lambda: slow.active == 1), 10)  # admitted, handshaking
    await asyncio.wait_for(slow.aclose(grace=0.1), 10)
    assert events[-1].ended == "shutdown" and slow.active == 0
    await server.aclose()
    for w in (w1, w2):
        w.close()


async def test_library_max_conns_counts_handshakes_in_progress(pki: PKI) -> None:
    from wirekit.net.gate import Limits

    events: list[ConnectionEvent] = []
    cert, key = pki.server
    async with await wirekit.serve("echo", "tls://127.0.0.1:0", cert=cert, key=key,
                                   limits=Limits(max_conns=1), on_event=events.append) as server:
        _, silent = await asyncio.open_connection("127.0.0.1", server.address.port)
        await asyncio.wait_for(_until(lambda: server.active == 1), 10)
        with pytest.raises(wirekit.errors.NetError):  # refused before any TLS
            await wirekit.connect(f"tls://localhost:{server.address.port}", ca=pki.ca,
                                  timeout=5)
        await asyncio.wait_for(_until(lambda: bool(events)), 10)
        assert (events[0].ended, events[0].detail) == ("refused", "at --max-conns 1")
        silent.close()


def test_sync_remote_speaks_tls(pki: PKI) -> None:
    """wirekit.Remote (the blocking API) takes the same TLS options as connect()."""
    import threading

    from wirekit.net.runtime import run

    ready, stop, box = threading.Event(), threading.Event(), {}

    async def serve_until_stopped() -> None:
        server = await wirekit.serve("echo", "tls://127.0.0.1:0", cert=pki.server[0],
                                     key=pki.server[1])
        box["port"] = server.address.port
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.01)
        await server.aclose()

    thread = threading.Thread(target=run, args=(serve_until_stopped(),))
    thread.start()
    try:
        assert ready.wait(10)
        with wirekit.Remote(f"tls://localhost:{box['port']}", ca=pki.ca) as remote:
            remote.sendline("blocking over tls")
            assert remote.recvline() == b"blocking over tls\n"
    finally:
        stop.set()
        thread.join(10)
