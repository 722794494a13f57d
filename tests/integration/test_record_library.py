"""``wirekit.connect(record=)`` and ``open_udp``/``udp_request(record=)``: the library records
a client's own connection as ``wirekit connect --record`` does (the files are read back
with our pcapng reader and an independent Ethernet/IP/TCP/UDP decoder)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import wirekit
from conftest import PKI, serving
from wirekit.capture.recorder import Recorder
from wirekit.errors import CertificateError, ConnectionReset, UsageError
from wirekit.net.udp import open_udp, udp_request
from wirekit.pcapng import DecryptionSecrets, Packet, read

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


@dataclass(frozen=True, slots=True)
class Seg:
    interface: int
    proto: int
    src: tuple[str, int]
    dst: tuple[str, int]
    flags: int
    payload: bytes


def _decode(p: Packet) -> Seg:
    """Ethernet + IPv4/IPv6 + TCP/UDP, as the recorder writes them."""
    ethertype = p.data[12:14]
    ip = p.data[14:]
    if ethertype == b"\x08\x00":
        head, total, proto = (ip[0] & 15) * 4, struct.unpack_from("!H", ip, 2)[0], ip[9]
        src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    else:
        assert ethertype == b"\x86\xdd", ethertype
        head, proto = 40, ip[6]
        total = 40 + struct.unpack_from("!H", ip, 4)[0]
        src = socket.inet_ntop(socket.AF_INET6, ip[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, ip[24:40])
    seg = ip[head:total]
    sport, dport = struct.unpack_from("!HH", seg)
    if proto == 6:
        return Seg(p.interface, 6, (src, sport), (dst, dport), seg[13],
                   bytes(seg[(seg[12] >> 4) * 4:]))
    return Seg(p.interface, proto, (src, sport), (dst, dport), 0, bytes(seg[8:]))


def blocks(path: Path) -> list[object]:
    with open(path, "rb") as f:
        return list(read(f))


def segments(path: Path, interface: int | None = None) -> list[Seg]:
    return [_decode(b) for b in blocks(path) if isinstance(b, Packet)
            and (interface is None or b.interface == interface)]


def story(segs: list[Seg], client_port: int) -> list[tuple[str, str, bytes]]:
    """(``>``/``<``, flags, payload) per segment but the bare ACKs: ``>`` from the client."""
    names = [(SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P")]
    return [(">" if s.src[1] == client_port else "<",
             "".join(n for bit, n in names if s.flags & bit), s.payload) for s in segs
            if s.payload or s.flags & (SYN | FIN | RST)]


def data(segs: list[Seg], client_port: int, *, sent: bool) -> bytes:
    return b"".join(s.payload for s in segs if (s.src[1] == client_port) == sent)


async def test_connect_record_writes_handshake_data_in_order_and_fins(
        tmp_path: Path, echo_port: int) -> None:
    path = tmp_path / "c.pcapng"
    with Recorder(path) as rec:
        async with await wirekit.connect(f"127.0.0.1:{echo_port}", record=rec) as conn:
            await conn.send(b"hello")
            assert await conn.recv_exactly(5, timeout=10) == b"hello"
            await conn.send(b"world!")
            assert await conn.recv_exactly(6, timeout=10) == b"world!"
            await conn.shutdown_write()
            assert await conn.recv(timeout=10) == b""
            port = conn.local.port
    segs = segments(path)
    assert {s.interface for s in segs} == {0}
    assert {s.src for s in segs} == {("127.0.0.1", port), ("127.0.0.1", echo_port)}
    assert story(segs, port) == [
        (">", "S", b""), ("<", "S", b""),
        (">", "P", b"hello"), ("<", "P", b"hello"),
        (">", "P", b"world!"), ("<", "P", b"world!"),
        (">", "F", b""),  # shutdown_write: our FIN, then the echo server passes it on
        ("<", "F", b""),
    ]
    assert [b for b in blocks(path) if isinstance(b, DecryptionSecrets)] == []


async def test_connect_record_close_writes_the_fins_client_first(
        tmp_path: Path, echo_port: int) -> None:
    path = tmp_path / "close.pcapng"
    payload = bytes(range(256)) * 400  # larger than one segment of the file
    with Recorder(path) as rec:
        conn = await wirekit.connect(f"127.0.0.1:{echo_port}", record=rec)
        await conn.send(payload)
        assert await conn.recv_exactly(len(payload), timeout=10) == payload
        port = conn.local.port
        await conn.aclose()
        await conn.aclose()  # a second close writes nothing more
    segs = segments(path)
    assert data(segs, port, sent=True) == payload
    assert data(segs, port, sent=False) == payload
    assert [f for d, f, _ in story(segs, port) if "F" in f or "R" in f] == ["F", "F"]
    assert story(segs, port)[-2:] == [(">", "F", b""), ("<", "F", b"")]


@contextlib.asynccontextmanager
async def resetting_server() -> AsyncIterator[int]:
    """Reads one chunk, then closes with an RST (SO_LINGER 0)."""
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read(100)
        sock = w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.transport.abort()

    async with serving(handle) as port:
        yield port


async def test_connect_record_peer_reset_is_an_rst(tmp_path: Path) -> None:
    path = tmp_path / "rst.pcapng"
    with Recorder(path) as rec:
        async with resetting_server() as sport:
            with pytest.raises(ConnectionReset):
                async with await wirekit.connect(f"127.0.0.1:{sport}", record=rec) as conn:
                    port = conn.local.port
                    await conn.send(b"bye")
                    await conn.recv(timeout=10)
    tail = story(segments(path), port)
    assert tail[2] == (">", "P", b"bye")
    assert tail[-1] == ("<", "R", b"") and not any("F" in f for _, f, _ in tail)


async def test_connect_record_sent_data_comes_before_its_echo(
        tmp_path: Path, echo_port: int) -> None:
    # The sender waits in drain() while a reader task already gets the echo: what was sent
    # is written when it goes to the transport, so no reply precedes its request.
    path = tmp_path / "both.pcapng"
    payload = bytes(range(256)) * 98304  # 24 MiB: more than the socket buffers, drain() waits
    with Recorder(path, max_bytes=128 * 1024 * 1024, queue_size=1 << 16) as rec:
        async with await wirekit.connect(f"127.0.0.1:{echo_port}", record=rec) as conn:
            port = conn.local.port
            async def read_all() -> bytes:
                got = b""
                while len(got) < len(payload):
                    got += await conn.recv(timeout=30)
                return got

            reading = asyncio.ensure_future(read_all())
            await conn.send(payload)
            assert await reading == payload
    assert rec.dropped == 0
    segs = segments(path)
    sent = received = 0
    for seg in segs:
        if seg.src[1] == port:
            sent += len(seg.payload)
        else:
            received += len(seg.payload)
            assert received <= sent  # never an echo of bytes not yet sent
    assert sent == received == len(payload)


@contextlib.asynccontextmanager
async def talking_server() -> AsyncIterator[int]:
    """Greets, reads one chunk, answers, closes: the client never reads."""
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"220 hello\r\n")
        await r.read(100)
        w.write(b"250 ok\r\n")
        await w.drain()
        w.close()

    async with serving(handle) as port:
        yield port


async def test_connect_record_writes_what_arrived_even_if_never_read(tmp_path: Path) -> None:
    path = tmp_path / "unread.pcapng"
    with Recorder(path) as rec:
        async with talking_server() as sport, \
                await wirekit.connect(f"127.0.0.1:{sport}", record=rec) as conn:
            port = conn.local.port
            await conn.send(b"HELO x\r\n")
            await asyncio.wait_for(_until(lambda: conn._eof_seen), 10)
    got = story(segments(path), port)
    assert got[:2] == [(">", "S", b""), ("<", "S", b"")]
    assert [x for x in got if x[2]] == [("<", "P", b"220 hello\r\n"), (">", "P", b"HELO x\r\n"),
                                        ("<", "P", b"250 ok\r\n")] or \
        [x for x in got if x[2]] == [(">", "P", b"HELO x\r\n"), ("<", "P", b"220 hello\r\n"),
                                     ("<", "P", b"250 ok\r\n")]
    assert [(d, f) for d, f, _ in got if "F" in f] == [("<", "F"), (">", "F")]  # theirs first


async def _until(predicate) -> None:  # type: ignore[no-untyped-def]
    while not predicate():
        await asyncio.sleep(0.01)


async def test_connect_record_reset_seen_while_sending_is_an_rst(tmp_path: Path) -> None:
    path = tmp_path / "sendrst.pcapng"
    with Recorder(path) as rec:
        async with resetting_server() as sport:
            conn = await wirekit.connect(f"127.0.0.1:{sport}", record=rec)
            port = conn.local.port
            await conn.send(b"first")
            with pytest.raises(ConnectionReset):
                for _ in range(1000):  # until the reset reaches a send
                    await conn.send(b"x" * 65536)
                    await asyncio.sleep(0.001)
            await conn.aclose()
    tail = story(segments(path), port)
    assert tail[-1] == ("<", "R", b"") and not any("F" in f for _, f, _ in tail)


async def test_connect_record_abort_is_our_rst(tmp_path: Path, echo_port: int) -> None:
    path = tmp_path / "abort.pcapng"
    with Recorder(path) as rec:
        conn = await wirekit.connect(f"127.0.0.1:{echo_port}", record=rec)
        port = conn.local.port
        conn.abort()
        await conn.aclose()
    assert story(segments(path), port) == [(">", "S", b""), ("<", "S", b""), (">", "R", b"")]


async def test_connect_tls_record_ciphertext_keys_and_plaintext_on_interface_1(
        tmp_path: Path, pki: PKI) -> None:
    cert, key = pki.server
    path = tmp_path / "tls.pcapng"
    secret = b"plaintext that only interface 1 shows\n"
    async with await wirekit.serve("echo", "tls://127.0.0.1:0", cert=cert, key=key) as server:
        sport = server.address.port
        with Recorder(path) as rec:
            async with await wirekit.connect(f"tls://127.0.0.1:{sport}", ca=pki.ca,
                                             record=rec) as conn:
                await conn.send(secret)
                assert await conn.recvline(timeout=10) == secret
                port = conn.local.port
    everything = blocks(path)
    dsbs = [b for b in everything if isinstance(b, DecryptionSecrets)]
    assert dsbs and b"CLIENT_HANDSHAKE_TRAFFIC_SECRET" in dsbs[0].data
    assert dsbs[0].secrets_type == 0x544C534B
    cipher, plain = segments(path, 0), segments(path, 1)
    assert {s.src for s in cipher} == {("127.0.0.1", port), ("127.0.0.1", sport)}
    assert story(cipher, port)[:2] == [(">", "S", b""), ("<", "S", b"")]
    assert data(cipher, port, sent=True)[:1] == b"\x16"  # a TLS handshake record
    assert secret not in data(cipher, port, sent=True) + data(cipher, port, sent=False)
    # The DSB comes before the first ciphertext it decrypts (the server's flight).
    first_reply = next(i for i, b in enumerate(everything) if isinstance(b, Packet)
                       and b.interface == 0 and _decode(b).src[1] == sport and _decode(b).payload)
    assert everything.index(dsbs[0]) < first_reply
    # The plaintext: the same connection in the other notation, on interface 1.
    assert {s.src for s in plain} == {("::ffff:127.0.0.1", port), ("::ffff:127.0.0.1", sport)}
    assert data(plain, port, sent=True) == secret == data(plain, port, sent=False)
    assert [f for _, f, _ in story(plain, port)].count("F") == 2
    assert [f for _, f, _ in story(cipher, port)].count("F") == 2


async def test_connect_tls_record_writes_a_failed_handshake(tmp_path: Path, pki: PKI) -> None:
    cert, key = pki.stranger_server  # issued by a root the client does not trust
    path = tmp_path / "failed.pcapng"
    async with await wirekit.serve("echo", "tls://127.0.0.1:0", cert=cert, key=key) as server:
        with Recorder(path) as rec, pytest.raises(CertificateError):
            await wirekit.connect(f"tls://localhost:{server.address.port}", ca=pki.ca,
                                  record=rec)
    segs = segments(path)
    assert segs and {s.interface for s in segs} == {0}  # no plaintext leg: never connected
    sport = server.address.port
    client_port = next(s.src[1] for s in segs if s.src[1] != sport)
    sent = data(segs, client_port, sent=True)
    assert sent[:1] == b"\x16" and sent[5:6] == b"\x01"  # the ClientHello
    assert data(segs, client_port, sent=False)[:1] == b"\x16"  # the server's flight
    assert [f for _, f, _ in story(segs, client_port)].count("F") == 2


async def test_connect_record_refuses_an_own_ssl_context(tmp_path: Path) -> None:
    with Recorder(tmp_path / "x.pcapng") as rec, pytest.raises(UsageError, match="ssl="):
        await wirekit.connect("tls://127.0.0.1:9", ssl=ssl.create_default_context(),
                              record=rec)


async def test_udp_request_record_writes_the_datagram_and_the_reply(tmp_path: Path) -> None:
    path = tmp_path / "udp.pcapng"
    async with await wirekit.serve("echo", "udp://127.0.0.1:0") as server:
        sport = server.address.port
        with Recorder(path) as rec:
            assert await udp_request(f"udp://127.0.0.1:{sport}", b"ping", timeout=5,
                                     record=rec) == b"ping"
            async with await open_udp(f"127.0.0.1:{sport}", record=rec) as client:
                client.send(b"two")
                assert await client.recv(timeout=10) == b"two"
                port = client.local.port
    segs = segments(path)
    assert all(s.proto == 17 and s.interface == 0 for s in segs)
    assert [(s.dst[1] == sport, s.payload) for s in segs] == [
        (True, b"ping"), (False, b"ping"), (True, b"two"), (False, b"two")]
    assert segs[-1].dst == ("127.0.0.1", port)
