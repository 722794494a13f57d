"""``--record`` of ``connect`` and ``serve``, read by the real tshark: UDP datagrams, the
plaintext leg of ``tls://`` on the second interface, and handshakes that fail."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import wirekit
from conftest import need_peer
from wirekit.capture.recorder import Recorder

UDP_CONV = re.compile(r"^(\S+):(\d+)\s+<->\s+(\S+):(\d+)\s+(\d+)\s+\d+ bytes\s+(\d+)\s")


def tshark(*args: str) -> str:
    proc = subprocess.run([need_peer("tshark"), *args], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def udp_conversations(path: Path) -> dict[frozenset[tuple[str, int]], int]:
    """``-z conv,udp``: each conversation's endpoints and its packet count (both ways)."""
    out = {}
    for line in tshark("-r", str(path), "-q", "-z", "conv,udp").splitlines():
        m = UDP_CONV.match(line)
        if m:
            out[frozenset({(m[1], int(m[2])), (m[3], int(m[4]))})] = int(m[5]) + int(m[6])
    return out


def udp_payloads(path: Path) -> list[tuple[int, int, bytes]]:
    """(source port, destination port, payload) of every UDP packet, in file order."""
    rows = tshark("-r", str(path), "-Y", "udp", "-T", "fields", "-e", "udp.srcport", "-e",
                  "udp.dstport", "-e", "udp.payload").splitlines()
    return [(int(a), int(b), bytes.fromhex(p)) for a, b, p in (r.split("\t") for r in rows)]


def test_connect_udp_record(tmp_path: Path, wirekit_proc) -> None:  # type: ignore[no-untyped-def]
    """``connect udp:// --record``: each datagram sent and each reply, as UDP packets with
    the client's real port and the server's."""
    need_peer("tshark")
    server = wirekit_proc("serve", "echo", "udp://127.0.0.1:0")
    _, _, port = server.listening()
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(300))
    path = tmp_path / "udp.pcapng"
    proc = subprocess.run(
        [sys.executable, "-m", "wirekit", "connect", f"udp://127.0.0.1:{port}", "--no-stdin",
         "--send", "first", "--send-file", str(blob), "--send", r"\x00last", "-v",
         "--record", str(path)], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    local = re.search(rb"local address 127\.0\.0\.1:(\d+)", proc.stderr)
    assert local, proc.stderr
    cport = int(local[1])
    sent = [b"first", b"\x00last", blob.read_bytes()]  # --send texts, then the files
    assert proc.stdout == b"".join(sent)
    assert udp_conversations(path) == {frozenset({("127.0.0.1", cport), ("127.0.0.1", port)}): 6}
    packets = udp_payloads(path)
    assert [p for s, _, p in packets if s == cport] == sent
    assert [p for s, d, p in packets if s == port and d == cport] == sent


def test_serve_udp_record_one_conversation_per_client(tmp_path: Path,
                                                      wirekit_proc) -> None:  # type: ignore[no-untyped-def]
    """``serve echo udp:// --record``: every client is its own conversation with the
    listening address; the payloads are the datagrams each way."""
    need_peer("tshark")
    path = tmp_path / "served-udp.pcapng"
    server = wirekit_proc("serve", "echo", "udp://127.0.0.1:0", "--record", str(path))
    _, _, port = server.listening()
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    sent: dict[int, list[bytes]] = {}
    try:
        for n, s in enumerate(clients):
            s.settimeout(10)
            s.connect(("127.0.0.1", port))
            cport = s.getsockname()[1]
            sent[cport] = [os.urandom(40 + n) for _ in range(n + 2)]
            for datagram in sent[cport]:
                s.send(datagram)
                assert s.recv(2048) == datagram
    finally:
        for s in clients:
            s.close()
    assert server.stop() == 0
    convs = udp_conversations(path)
    assert convs == {frozenset({("127.0.0.1", c), ("127.0.0.1", port)}): 2 * len(d)
                     for c, d in sent.items()}
    packets = udp_payloads(path)
    for cport, datagrams in sent.items():
        assert [p for s, d, p in packets if s == cport and d == port] == datagrams
        assert [p for s, d, p in packets if s == port and d == cport] == datagrams


async def test_tcp_and_udp_listeners_record_into_one_file(tmp_path: Path) -> None:
    """Several ``serve()`` listeners, TCP and UDP, share one recorder and one file."""
    need_peer("tshark")
    path = tmp_path / "both.pcapng"
    rec = Recorder(path)
    tcp = await wirekit.serve("echo", "tcp://127.0.0.1:0", record=rec)
    udp = await wirekit.serve("echo", "udp://127.0.0.1:0", record=rec)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", tcp.address.port)
        w.write(b"over tcp")
        await w.drain()
        w.write_eof()
        assert await asyncio.wait_for(r.read(), 10) == b"over tcp"
        w.close()
        await w.wait_closed()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.settimeout(10)
            s.connect(("127.0.0.1", udp.address.port))
            s.send(b"over udp")
            assert await asyncio.to_thread(s.recv, 2048) == b"over udp"
            uport = s.getsockname()[1]
    finally:
        await tcp.aclose(1)
        await udp.aclose(1)
    rec.close()
    assert udp_conversations(path) == {
        frozenset({("127.0.0.1", uport), ("127.0.0.1", udp.address.port)}): 2}
    streams = tshark("-r", str(path), "-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.srcport",
                     "-e", "tcp.payload").splitlines()
    assert f"{tcp.address.port}\t{b'over tcp'.hex()}" in streams
