"""``--record``: relayed connections written to pcapng (read back with our own reader and
``wirekit inspect``; the tshark checks live in tests/interop/test_record_tshark.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import wirekit
from conftest import serving, wait_for
from wirekit.capture.flows import FIN, RST, SYN
from wirekit.capture.recorder import Recorder
from wirekit.errors import ParseError
from wirekit.pcapng import Packet, read


@dataclass(frozen=True, slots=True)
class Seg:
    proto: int
    src: str
    sport: int
    dst: str
    dport: int
    flags: int
    payload: bytes


def decode_frame(frame: bytes) -> Seg:
    """Ethernet + IPv4 + TCP/UDP, as the recorder writes them (an independent decoder)."""
    assert frame[12:14] == b"\x08\x00", "IPv4 expected"
    ip = frame[14:]
    ihl = (ip[0] & 15) * 4
    total, proto = struct.unpack_from("!H", ip, 2)[0], ip[9]
    src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    seg = ip[ihl:total]
    sport, dport = struct.unpack_from("!HH", seg)
    if proto == 6:
        off = (seg[12] >> 4) * 4
        return Seg(6, src, sport, dst, dport, seg[13], bytes(seg[off:]))
    return Seg(proto, src, sport, dst, dport, 0, bytes(seg[8:]))


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
            w.write_eof()
        except ConnectionError:
            pass
        finally:
            w.close()

    async with serving(echo) as port:
        yield port


async def round_trip(port: int, payload: bytes) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(payload)
    await w.drain()
    got = await asyncio.wait_for(r.readexactly(len(payload)), 10)
    w.write_eof()
    assert await asyncio.wait_for(r.read(), 10) == b""
    w.close()
    await w.wait_closed()
    return got


def packets(path: Path, *, torn_tail: bool = False) -> list[Packet]:
    """The file's packets; ``torn_tail``: stop at a damaged last block (a process killed
    in the middle of a write), which must then lie at the very end of the file."""
    out: list[Packet] = []
    with open(path, "rb") as f:
        try:
            out.extend(b for b in read(f) if isinstance(b, Packet))
        except ParseError as exc:
            if not torn_tail:
                raise
            assert exc.offset is not None and path.stat().st_size - exc.offset < 4 * 2**20, exc
    return out


def streams(path: Path, *, torn_tail: bool = False,
            ) -> dict[tuple[tuple[str, int], tuple[str, int]], bytes]:
    """Payload per direction ((src, sport), (dst, dport)), in file order."""
    out: dict[tuple[tuple[str, int], tuple[str, int]], bytes] = {}
    for p in packets(path, torn_tail=torn_tail):
        d = decode_frame(p.data)
        key = ((d.src, d.sport), (d.dst, d.dport))
        out[key] = out.get(key, b"") + bytes(d.payload)
    return out


async def forward_round_trip(rec: Recorder, payload: bytes) -> tuple[int, int]:
    """``payload`` through a recorded forward to an echo server and back, until the forward
    reports the connection ended; the forward's and the echo server's ports."""
    events: list[object] = []
    async with echo_server() as port:
        fwd = await wirekit.forward(":0", f"127.0.0.1:{port}", record=rec,
                                    on_event=events.append)
        try:
            assert await round_trip(fwd.address.port, payload) == payload
            await asyncio.wait_for(_until(lambda: events), 10)
        finally:
            await fwd.aclose(0)
    return fwd.address.port, port


async def test_forward_record_writes_both_legs_with_the_relayed_bytes(tmp_path: Path) -> None:
    path = tmp_path / "fwd.pcapng"
    payload = os.urandom(300_000)
    rec = Recorder(path)
    lport, port = await forward_round_trip(rec, payload)
    rec.close()
    assert rec.dropped == 0 and rec.error is None and rec.packets > 0
    flows = streams(path)
    client_up = [v for (s, d), v in flows.items() if d == ("127.0.0.1", lport)]
    target_up = [v for (s, d), v in flows.items() if d == ("127.0.0.1", port)]
    target_down = [v for (s, d), v in flows.items() if s == ("127.0.0.1", port)]
    client_down = [v for (s, d), v in flows.items() if s == ("127.0.0.1", lport)]
    assert client_up == [payload] and target_up == [payload]
    assert client_down == [payload] and target_down == [payload]
    # Both legs open with a handshake and close with FINs both ways.
    flags = [decode_frame(p.data).flags for p in packets(path)]
    assert sum(1 for f in flags if f & SYN) == 4
    assert sum(1 for f in flags if f & FIN) == 4
    assert not any(f & RST for f in flags)


async def _until(predicate: object) -> None:
    while not predicate():  # type: ignore[operator]
        await asyncio.sleep(0.01)


async def test_record_reset_connection_ends_with_rst(tmp_path: Path) -> None:
    path = tmp_path / "rst.pcapng"

    async def reset_after_read(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read(10)
        sock = w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        w.transport.abort()

    events: list[object] = []
    with Recorder(path) as rec:
        async with serving(reset_after_read) as port:
            fwd = await wirekit.forward(":0", f"127.0.0.1:{port}", record=rec,
                                        on_event=events.append)
            r, w = await asyncio.open_connection("127.0.0.1", fwd.address.port)
            w.write(b"hello")
            await w.drain()
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(r.read(), 10)
            w.close()
            await asyncio.wait_for(_until(lambda: events), 10)
            await fwd.aclose(0)
    assert events[0].reason == "reset"  # type: ignore[attr-defined]
    flags = [decode_frame(p.data).flags for p in packets(path)]
    assert sum(1 for f in flags if f & RST) == 2  # one per leg
    assert not any(f & FIN for f in flags)


async def test_record_udp_forward_writes_datagrams(tmp_path: Path) -> None:
    path = tmp_path / "udp.pcapng"
    loop = asyncio.get_running_loop()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, t: asyncio.BaseTransport) -> None:
            self.t = t

        def datagram_received(self, data: bytes, addr: object) -> None:
            self.t.sendto(data.upper(), addr)  # type: ignore[attr-defined]

    target, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    tport = target.get_extra_info("sockname")[1]
    with Recorder(path) as rec:
        fwd = await wirekit.forward("udp://:0", f"udp://127.0.0.1:{tport}", record=rec)
        try:
            reply = await wirekit.udp_request(f"udp://127.0.0.1:{fwd.address.port}", b"ping",
                                              timeout=5)
        finally:
            await fwd.aclose(0)
            target.close()
    assert reply == b"PING"
    decoded = [decode_frame(p.data) for p in packets(path)]
    assert [(d.proto, bytes(d.payload)) for d in decoded] == [(17, b"ping"), (17, b"PING")]
    assert decoded[0].dport == fwd.address.port


async def test_overflowing_queue_counts_drops_and_never_blocks(tmp_path: Path) -> None:
    path = tmp_path / "drops.pcapng"
    payload = os.urandom(200_000)
    rec = Recorder(path, queue_size=2, max_bytes=1)  # no payload fits: every data chunk drops
    await forward_round_trip(rec, payload)
    rec.close()
    assert rec.dropped > 0 and rec.dropped_events > 0
    assert "dropped" in rec.summary()
    # What was written still reads, and carries no payload (every data chunk was dropped).
    assert all(not decode_frame(p.data).payload for p in packets(path))


def _cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wirekit", *args], capture_output=True,
                          text=True, timeout=timeout)


def _through(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def test_cli_record_then_inspect(tmp_path: Path, wirekit_proc, echo_port: int) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cli.pcapng"
    p = wirekit_proc("forward", ":0", f"127.0.0.1:{echo_port}", "--record", str(path))
    _, _, port = p.listening()
    assert _through(port, b"GET / HTTP/1.0\r\n\r\n") == b"GET / HTTP/1.0\r\n\r\n"
    p.wait_line(r"closed: 18 B up, 18 B down")
    assert p.stop() == 0
    p.wait_line(r"recorded \d+ packets to ")
    report = json.loads(_cli("inspect", "--json", str(path)).stdout)
    convs = report["conversations"]
    assert len(convs) == 2
    assert {c["server"] for c in convs} == {f"127.0.0.1:{port}", f"127.0.0.1:{echo_port}"}
    assert all(c["opened"] == "handshake" and c["closed"] == "fin" for c in convs)
    assert [h["uri"] for h in report["http"] if h.get("method")] == ["/", "/"]


def test_cli_record_rejects_workers_and_splice(tmp_path: Path) -> None:
    for extra in (["--workers", "2"], ["--splice"]):
        proc = _cli("forward", ":0", "127.0.0.1:9", "--record", str(tmp_path / "x.pcapng"),
                    *extra)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "--record" in proc.stderr


def test_killed_recording_reads_cleanly(tmp_path: Path, wirekit_proc, echo_port: int) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "killed.pcapng"
    p = wirekit_proc("forward", ":0", f"127.0.0.1:{echo_port}", "--record", str(path))
    _, _, port = p.listening()
    payload = os.urandom(100_000)
    for _ in range(3):
        assert _through(port, payload) == payload
    wait_for(lambda: p.stderr.count(" closed: ") == 3, 10, "three connection lines")
    # Every data segment of the three connections reached the file before the kill (a
    # packet count is not enough: how the relay's reads split 100 kB varies with load).

    def caught_up() -> bool:
        try:
            flows = streams(path)
        except ParseError:  # read while the writer was mid-block
            return False
        return sum(v == payload for v in flows.values()) == 12

    wait_for(caught_up, 10, "the recording to catch up")
    p.kill()
    flows = streams(path, torn_tail=True)  # the kill may cut the FINs' block being written
    assert sum(v == payload for v in flows.values()) == 12  # 3 conns x 2 legs x 2 ways


def test_full_disk_stops_recording_with_one_line_and_forward_keeps_relaying(
        tiny_disk: Path, wirekit_proc, echo_port: int) -> None:  # type: ignore[no-untyped-def]
    path = tiny_disk / "full.pcapng"
    p = wirekit_proc("forward", ":0", f"127.0.0.1:{echo_port}", "--record", str(path))
    _, _, port = p.listening()
    payload = os.urandom(200_000)  # more than the 64 KiB disk, on the first connection
    assert _through(port, payload) == payload
    p.wait_line(r"recording to .* stopped: No space left on device \(ENOSPC\)")
    # The forward carries on.
    assert _through(port, b"still here") == b"still here"
    wait_for(lambda: p.stderr.count(" closed: ") == 2, 10, "two connection lines")
    assert p.stop() == 0
    errors = [line for line in p.stderr_lines if line.startswith("wirekit: error:")]
    assert len(errors) == 1, p.stderr


async def test_serve_record_writes_each_served_connection(tmp_path: Path) -> None:
    path = tmp_path / "serve.pcapng"
    payload = os.urandom(150_000)
    with Recorder(path) as rec:
        server = await wirekit.serve("echo", "tcp://127.0.0.1:0", record=rec)
        try:
            assert await round_trip(server.address.port, payload) == payload
            assert await round_trip(server.address.port, b"two") == b"two"
        finally:
            await server.aclose()
    flows = streams(path)
    sport = server.address.port
    assert sorted(v for (s, d), v in flows.items() if d[1] == sport) == sorted([payload, b"two"])
    assert sorted(v for (s, d), v in flows.items() if s[1] == sport) == sorted([payload, b"two"])
    flags = [decode_frame(p.data).flags for p in packets(path)]
    assert sum(1 for f in flags if f & SYN) == 4 and sum(1 for f in flags if f & FIN) == 4


async def test_serve_record_udp_writes_each_datagram(tmp_path: Path) -> None:
    path = tmp_path / "udp.pcapng"
    with Recorder(path) as rec:
        server = await wirekit.serve("echo", "udp://127.0.0.1:0", record=rec)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with sock:
                sock.settimeout(10)
                sock.connect(("127.0.0.1", server.address.port))
                sock.send(b"datagram one")
                assert await asyncio.to_thread(sock.recv, 100) == b"datagram one"
        finally:
            await server.aclose()
    frames = [p.data for p in packets(path)]
    assert len(frames) == 2  # the datagram and the reply, no handshake
    assert all(f.endswith(b"datagram one") for f in frames)


def test_connect_record_writes_the_session(tmp_path: Path, echo_port: int) -> None:
    path = tmp_path / "connect.pcapng"
    proc = subprocess.run([sys.executable, "-m", "wirekit", "connect",
                           f"127.0.0.1:{echo_port}", "--record", str(path)],
                          input=b"hello over the wire\n", capture_output=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"hello over the wire\n"
    flows = streams(path)
    assert [v for (s, d), v in flows.items() if d[1] == echo_port] == [proc.stdout]
    assert [v for (s, d), v in flows.items() if s[1] == echo_port] == [proc.stdout]
    flags = [decode_frame(p.data).flags for p in packets(path)]
    assert sum(1 for f in flags if f & SYN) == 2 and sum(1 for f in flags if f & FIN) == 2


async def test_tunnel_record_writes_the_local_leg(tmp_path: Path, wirekit_sshd,  # type: ignore[no-untyped-def]
                                                  echo_port: int) -> None:
    from wirekit.ssh.tunnel import tunnel

    ssh_port, options = wirekit_sshd
    path = tmp_path / "tunnel.pcapng"
    payload = os.urandom(100_000)
    with Recorder(path) as rec:
        async with tunnel(f"root@127.0.0.1:{ssh_port}", local=[f"0:127.0.0.1:{echo_port}"],
                          options=options, record=rec) as t:
            lport = t.local_ports[0]
            assert await round_trip(lport, payload) == payload
    flows = streams(path)
    assert [v for (s, d), v in flows.items() if d[1] == lport] == [payload]
    assert [v for (s, d), v in flows.items() if s[1] == lport] == [payload]


async def test_forward_record_tls_refuses_splice(tmp_path: Path) -> None:
    # A tls:// forward records (its TLS leg as ciphertext, see test_record_tshark), but
    # --splice still cannot carry TLS, recorded or not.
    with (Recorder(tmp_path / "x.pcapng") as rec,
          pytest.raises(wirekit.errors.UsageError, match="splice")):
        await wirekit.forward("tls://127.0.0.1:0", "127.0.0.1:9", record=rec, splice=True)


def test_a_wildcard_listener_records_the_address_the_client_reached(tmp_path: Path) -> None:
    from wirekit.address import Address
    from wirekit.capture.relay_tap import RecordingTap
    from wirekit.net.forward import ConnInfo

    path = tmp_path / "wildcard.pcapng"
    info = ConnInfo("tcp", Address("tcp", "127.0.0.1", 40000), Address("tcp", "0.0.0.0", 8080),
                    Address("tcp", "127.0.0.1", 9), Address("tcp", "127.0.0.2", 8080))
    with Recorder(path) as rec:
        tap = RecordingTap(rec, info, None)
        tap("up", b"to the second loopback address", 1.0)
    assert streams(path)[(("127.0.0.1", 40000), ("127.0.0.2", 8080))] == (
        b"to the second loopback address")


async def test_forward_taps_learn_the_accepted_sockets_own_address(echo_port: int) -> None:
    infos: list = []

    def factory(info):  # type: ignore[no-untyped-def]
        infos.append(info)
        return None

    fwd = await wirekit.forward("127.0.0.1:0", f"127.0.0.1:{echo_port}", tap=factory)
    try:
        assert await round_trip(fwd.address.port, b"x") == b"x"
    finally:
        await fwd.aclose()
    assert [(i.local.host, i.local.port) for i in infos] == [("127.0.0.1", fwd.address.port)]
