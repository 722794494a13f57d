"""Recordings made by ``forward(record=...)`` read by the real tshark: its conversation list,
``follow,tcp,raw`` stream bytes, checksums and sequence analysis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import wirekit
from conftest import need_peer, serving
from wirekit.capture.recorder import Recorder
from wirekit.pcapng import read

CONV = re.compile(r"^(\S+):(\d+)\s+<->\s+(\S+):(\d+)\s")


def tshark(*args: str) -> str:
    proc = subprocess.run([need_peer("tshark"), *args], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def conversations(path: Path) -> set[frozenset[tuple[str, int]]]:
    out = set()
    for line in tshark("-r", str(path), "-q", "-z", "conv,tcp").splitlines():
        m = CONV.match(line)
        if m:
            out.add(frozenset({(m[1], int(m[2])), (m[3], int(m[4]))}))
    return out


def follow(path: Path, streams: int) -> list[tuple[tuple[str, int], bytes, bytes]]:
    """``-z follow,tcp,raw,N`` for streams 0..N-1 in one tshark run: per stream (node 0,
    bytes node 0 sent, bytes node 1 sent)."""
    args = ["-r", str(path), "-q"]
    for n in range(streams):
        args += ["-z", f"follow,tcp,raw,{n}"]
    text = tshark(*args)
    out = {}
    for section in text.split("Follow: tcp,raw")[1:]:
        stream = int(re.search(r"tcp.stream eq (\d+)", section)[1])  # type: ignore[index]
        node0 = re.search(r"Node 0: (\S+):(\d+)", section)
        assert node0, section
        sent: dict[int, list[bytes]] = {0: [], 1: []}
        body = section.split("Node 1:", 1)[1].split("\n", 1)[1]
        for line in body.splitlines():
            if not line.strip() or line.startswith("="):
                continue
            sent[1 if line.startswith("\t") else 0].append(bytes.fromhex(line.strip()))
        out[stream] = ((node0[1], int(node0[2])), b"".join(sent[0]), b"".join(sent[1]))
    assert sorted(out) == list(range(streams)), text[:2000]
    return [out[n] for n in range(streams)]


@contextlib.asynccontextmanager
async def upper_server() -> AsyncIterator[int]:
    """Answers each connection's bytes upper-cased, then closes."""
    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        data = await r.read()
        w.write(data.upper())
        await w.drain()
        w.close()

    async with serving(serve) as port:
        yield port


async def client(port: int, payload: bytes) -> tuple[int, bytes]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    cport = w.get_extra_info("sockname")[1]
    w.write(payload)
    await w.drain()
    w.write_eof()
    got = await asyncio.wait_for(r.read(), 10)
    w.close()
    await w.wait_closed()
    return cport, got


async def test_tshark_reads_a_recorded_forward(tmp_path: Path) -> None:
    need_peer("tshark")
    path = tmp_path / "fwd.pcapng"
    payloads = [os.urandom(n) + b"end" for n in (10, 70_000, 140_000, 1)]
    events: list[object] = []
    rec = Recorder(path)
    async with upper_server() as port:
        fwd = await wirekit.forward(":0", f"127.0.0.1:{port}", record=rec,
                                    on_event=events.append)
        try:
            results = await asyncio.gather(*(client(fwd.address.port, p) for p in payloads))
            while len(events) < len(payloads):
                await asyncio.sleep(0.01)
        finally:
            await fwd.aclose(0)
    rec.close()
    lport = fwd.address.port
    for (_, got), sent in zip(results, payloads, strict=True):
        assert got == sent.upper()

    convs = conversations(path)
    assert len(convs) == 2 * len(payloads)
    for cport, _ in results:
        assert frozenset({("127.0.0.1", cport), ("127.0.0.1", lport)}) in convs
    assert sum(1 for c in convs if ("127.0.0.1", port) in c) == len(payloads)

    # Every stream, each way, carries exactly what went through wirekit.
    seen = []
    for node0, zero_sent, one_sent in follow(path, len(convs)):
        # node 0 is the side that sent the SYN: the client of that leg
        seen.append((zero_sent, one_sent))
        assert node0[1] != port and node0[1] != lport
    for sent in payloads:
        assert seen.count((sent, sent.upper())) == 2  # client leg and target leg

    # Sequence analysis finds nothing to complain about; checksums are right.
    assert tshark("-r", str(path), "-Y", "tcp.analysis.flags") == ""
    status = tshark("-r", str(path), "-o", "tcp.check_checksum:TRUE", "-o",
                    "ip.check_checksum:TRUE", "-T", "fields", "-e", "tcp.checksum.status",
                    "-e", "ip.checksum.status").split()
    assert status and set(status) == {"1"}  # 1 = Good


async def test_tshark_sees_the_gap_of_dropped_packets(tmp_path: Path) -> None:
    need_peer("tshark")
    path = tmp_path / "gap.pcapng"
    rec = Recorder(path, max_bytes=1)  # every data chunk is dropped, sequence numbers advance
    async with upper_server() as port:
        fwd = await wirekit.forward(":0", f"127.0.0.1:{port}", record=rec)
        try:
            _, got = await client(fwd.address.port, b"hello")
        finally:
            await fwd.aclose(0)
    rec.close()
    assert got == b"HELLO" and rec.dropped > 0
    flagged = tshark("-r", str(path), "-Y", "tcp.analysis.ack_lost_segment or "
                     "tcp.analysis.lost_segment", "-T", "fields", "-e", "frame.number")
    assert flagged.split(), "tshark should flag the gap the dropped data left"


def test_connect_tls_record_is_ciphertext_that_tshark_decrypts(tmp_path: Path,
                                                               wirekit_proc) -> None:  # type: ignore[no-untyped-def]
    """``connect tls:// --record``: the TLS leg as ciphertext, keys in a Decryption Secrets
    Block, so ``tshark -r`` decrypts with no key-log file (the plaintext on interface 1)."""
    need_peer("tshark")
    path = tmp_path / "tls.pcapng"
    server = wirekit_proc("serve", "http", "tls://127.0.0.1:0", "--ca-dir", str(tmp_path / "ca"))
    _, _, port = server.listening()
    proc = subprocess.run(
        [sys.executable, "-m", "wirekit", "connect", f"tls://127.0.0.1:{port}",
         "--ca", str(tmp_path / "ca" / "ca.pem"), "--record", str(path)],
        input=b"GET /recorded-secret HTTP/1.0\r\nHost: localhost\r\n\r\n",
        capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"HTTP/1.0 404")
    raw = path.read_bytes()
    assert raw.count(b"recorded-secret") == 1  # on the plaintext leg only, interface 1
    with open(path, "rb") as f:
        kinds = [type(b).__name__ for b in read(f)]
    assert "DecryptionSecrets" in kinds
    assert kinds.index("DecryptionSecrets") < len(kinds) - kinds[::-1].index("Packet") - 1
    uris = tshark("-r", str(path), "-Y", "frame.interface_id == 0 and http.request", "-T",
                  "fields", "-e", "http.request.uri").split()
    assert uris == ["/recorded-secret"]
    status = tshark("-r", str(path), "-Y", "frame.interface_id == 0 and http.response", "-T",
                    "fields", "-e", "http.response.code").split()
    assert status == ["404"]
    assert tshark("-r", str(path), "-Y", "tcp.analysis.flags") == ""


@contextlib.asynccontextmanager
async def http_target() -> AsyncIterator[int]:
    """A plaintext HTTP/1.0 server: reads the request head, answers 200 and closes."""
    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await r.readuntil(b"\r\n\r\n")
            w.write(b"HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\nrelayed")
            await w.drain()
        w.close()

    async with serving(serve) as port:
        yield port


def _pki(tmp_path: Path) -> tuple[Path, Path, Path]:
    from wirekit.tls import certs

    ca = certs.LocalCA.init(tmp_path / "ca", common_name="Record Root")
    issued = ca.issue(["localhost", "127.0.0.1"], tmp_path / "server")
    return ca.cert_path, issued.cert_path, issued.key_path


async def _get(port: int, uri: str, ctx: ssl.SSLContext | None = None) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    w.write(f"GET {uri} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
    await w.drain()
    got = await asyncio.wait_for(r.read(), 10)
    w.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await w.wait_closed()
    return got


def _uris(path: Path, port: int) -> list[str]:
    return tshark("-r", str(path), "-Y", f"http.request and tcp.port == {port}", "-T",
                  "fields", "-e", "http.request.uri").split()


def _ifaces(path: Path, port: int) -> set[str]:
    return set(tshark("-r", str(path), "-Y", f"tcp.port == {port}", "-T", "fields", "-e",
                      "frame.interface_name").split())


def _secrets_first(path: Path) -> None:
    with open(path, "rb") as f:
        kinds = [type(b).__name__ for b in read(f)]
    assert "DecryptionSecrets" in kinds
    assert kinds.index("DecryptionSecrets") < len(kinds) - kinds[::-1].index("Packet") - 1


async def test_forward_tls_listener_record_is_ciphertext_that_tshark_decrypts(
        tmp_path: Path) -> None:
    """``forward tls://LISTEN TARGET --record``: the client leg as TLS ciphertext with its
    keys in a Decryption Secrets Block, the target leg as plaintext."""
    need_peer("tshark")
    from wirekit.net.forward_tls import ListenTLS

    ca, cert, key = _pki(tmp_path)
    path = tmp_path / "term.pcapng"
    ctx = ssl.create_default_context(cafile=str(ca))
    rec = Recorder(path)
    async with http_target() as port:
        fwd = await wirekit.forward("tls://127.0.0.1:0", f"127.0.0.1:{port}", record=rec,
                                    listen_tls=ListenTLS(cert=cert, key=key))
        try:
            got = await _get(fwd.address.port, "/some/uri", ctx)
            await asyncio.wait_for(_until_closed(fwd), 10)
        finally:
            await fwd.aclose(0)
    rec.close()
    assert got.endswith(b"relayed")
    _secrets_first(path)
    listen = fwd.address.port
    assert _uris(path, listen) == ["/some/uri"]  # decrypted from the ciphertext leg
    assert _uris(path, port) == ["/some/uri"]  # the plaintext leg to the target
    assert tshark("-r", str(path), "-Y", f"tls.record and tcp.port == {listen}", "-T",
                  "fields", "-e", "frame.number").split()
    assert _ifaces(path, listen) == {"wirekit"}  # the TLS leg
    assert _ifaces(path, port) == {"wirekit-plain"}  # the plaintext leg, second interface
    convs = conversations(path)  # the two TCP connections
    assert len(convs) == 2, convs
    assert {("127.0.0.1", listen) in c for c in convs} == {True, False}
    assert {("127.0.0.1", port) in c for c in convs} == {True, False}


async def test_forward_tls_target_record_is_ciphertext_that_tshark_decrypts(
        tmp_path: Path) -> None:
    """``forward LISTEN tls://TARGET --record``: the target leg as TLS ciphertext (keys in
    a DSB), the client leg as plaintext."""
    need_peer("tshark")
    from wirekit.net.forward_tls import ListenTLS, TargetTLS

    ca, cert, key = _pki(tmp_path)
    path = tmp_path / "orig.pcapng"
    rec = Recorder(path)
    async with http_target() as port:
        term = await wirekit.forward("tls://127.0.0.1:0", f"127.0.0.1:{port}",
                                     listen_tls=ListenTLS(cert=cert, key=key))
        orig = await wirekit.forward("127.0.0.1:0", f"tls://127.0.0.1:{term.address.port}",
                                     record=rec, target_tls=TargetTLS(ca=ca))
        try:
            got = await _get(orig.address.port, "/other/uri")
            await asyncio.wait_for(_until_closed(orig), 10)
        finally:
            await orig.aclose(0)
            await term.aclose(0)
    rec.close()
    assert got.endswith(b"relayed")
    raw = path.read_bytes()
    assert raw.count(b"/other/uri") == 1  # on the plaintext client leg only
    _secrets_first(path)
    assert _uris(path, term.address.port) == ["/other/uri"]  # decrypted
    assert _uris(path, orig.address.port) == ["/other/uri"]
    assert _ifaces(path, term.address.port) == {"wirekit"}  # the TLS leg
    assert _ifaces(path, orig.address.port) == {"wirekit-plain"}


async def _until_closed(fwd: object) -> None:
    while getattr(fwd, "open", 0):
        await asyncio.sleep(0.01)


def tls_exchange(port: int, cafile: Path, request: bytes) -> bytes:
    """Send ``request`` over TLS to ``127.0.0.1:port`` and read until the server closes."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    reply = b""
    with (socket.create_connection(("127.0.0.1", port), timeout=10) as raw_sock,
          ctx.wrap_socket(raw_sock, server_hostname="127.0.0.1") as s):
        s.sendall(request)
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            while data := s.recv(65536):
                reply += data
    return reply


def test_serve_tls_record_is_ciphertext_that_tshark_decrypts(tmp_path: Path,
                                                             wirekit_proc) -> None:  # type: ignore[no-untyped-def]
    """``serve SERVICE tls:// --record``: the accepted connections as TLS ciphertext, keys
    in a Decryption Secrets Block ahead of them (and the plaintext on interface 1)."""
    need_peer("tshark")
    path = tmp_path / "served.pcapng"
    server = wirekit_proc("serve", "http", "tls://127.0.0.1:0", "--ca-dir",
                          str(tmp_path / "ca"), "--record", str(path))
    _, _, port = server.listening()
    reply = tls_exchange(port, tmp_path / "ca" / "ca.pem",
                         b"GET /served/uri HTTP/1.0\r\nHost: localhost\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 404")
    assert server.stop() == 0
    raw = path.read_bytes()
    assert raw.count(b"/served/uri") == 1  # on the plaintext leg only, interface 1
    _secrets_first(path)
    assert _uris(path, port) == ["/served/uri"] * 2  # decrypted, and the plaintext leg
    status = tshark("-r", str(path), "-Y", "frame.interface_id == 0 and http.response", "-T",
                    "fields", "-e", "http.response.code").split()
    assert status == ["404"]


async def test_forward_tls_to_tls_record_is_two_ciphertext_legs(tmp_path: Path) -> None:
    """``forward tls://LISTEN tls://TARGET --record``: both legs ciphertext, both decrypted,
    no plaintext anywhere in the file."""
    need_peer("tshark")
    from wirekit.net.forward_tls import ListenTLS, TargetTLS

    ca, cert, key = _pki(tmp_path)
    path = tmp_path / "both.pcapng"
    ctx = ssl.create_default_context(cafile=str(ca))
    rec = Recorder(path)
    async with http_target() as port:
        term = await wirekit.forward("tls://127.0.0.1:0", f"127.0.0.1:{port}",
                                     listen_tls=ListenTLS(cert=cert, key=key))
        both = await wirekit.forward("tls://127.0.0.1:0", f"tls://127.0.0.1:{term.address.port}",
                                     record=rec, listen_tls=ListenTLS(cert=cert, key=key),
                                     target_tls=TargetTLS(ca=ca))
        try:
            got = await _get(both.address.port, "/both/uri", ctx)
            await asyncio.wait_for(_until_closed(both), 10)
        finally:
            await both.aclose(0)
            await term.aclose(0)
    rec.close()
    assert got.endswith(b"relayed")
    assert b"/both/uri" not in path.read_bytes()
    _secrets_first(path)
    assert _uris(path, both.address.port) == ["/both/uri"]
    assert _uris(path, term.address.port) == ["/both/uri"]
    assert _ifaces(path, both.address.port) == _ifaces(path, term.address.port) == {"wirekit"}
