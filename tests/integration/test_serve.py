"""``wirekit serve`` and ``wirekit.serve`` over loopback: every service, TCP and UDP, limits.

In-process servers are driven by asyncio clients; the CLI is driven by blocking sockets
from the test process (the server runs in a subprocess).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import threading
import time

import pytest

from conftest import async_wait_for, require, wait_for
from wirekit.errors import BindError, UsageError
from wirekit.net.acl import AccessList
from wirekit.net.gate import Limits
from wirekit.net.server import ConnectionEvent, Server, serve
from wirekit.net.services import CHARGEN_CYCLE, chargen_lines
from wirekit.net.stream import Connection

CTIME = "%a %b %d %H:%M:%S %Y"


def parse_ctime(reply: bytes) -> float:
    return time.mktime(time.strptime(reply.decode().strip(), CTIME))


async def tcp_exchange(port: int, payload: bytes, *, host: str = "127.0.0.1",
                       timeout: float = 5.0) -> bytes:
    """Send ``payload``, half-close, read until the server closes."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def udp_ask(port: int, payload: bytes, *, timeout: float = 5.0) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_sendto(sock, payload, ("127.0.0.1", port))
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), timeout)
        return data


class Events(list[ConnectionEvent]):
    async def wait(self, n: int = 1, timeout: float = 5.0) -> None:
        await async_wait_for(lambda: len(self) >= n, timeout, f"{n} connection event(s)")


async def start(service, address: str = "tcp://127.0.0.1:0", **limits) -> tuple[Server, Events]:
    events = Events()
    server = await serve(service, address, limits=Limits(**limits), on_event=events.append)
    return server, events


# -- every service over TCP -----------------------------------------------------------------------
async def test_echo_library_roundtrip() -> None:
    server, events = await start("echo")
    async with server:
        assert server.address.port != 0 and server.address.host == "127.0.0.1"
        data = os.urandom(300_000)
        assert await tcp_exchange(server.address.port, data) == data
        await events.wait()
    (ev,) = events
    assert (ev.service, ev.bytes_in, ev.bytes_out, ev.ended) == ("echo", 300_000, 300_000,
                                                                "peer closed")
    assert server.completed == 1 and server.bytes_in == 300_000


async def test_time_the_chapters_client_and_end() -> None:
    server, events = await start("time")
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
        writer.write(b"GET TIME")  # no newline, like the chapter's client
        first = await asyncio.wait_for(reader.readline(), 5)
        assert abs(parse_ctime(first) - time.time()) < 5
        writer.write(b"again\r\nand again\n")
        for _ in range(2):
            parse_ctime(await asyncio.wait_for(reader.readline(), 5))
        writer.write(b"END\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed
        writer.close()
        await events.wait()
    assert events[0].ended == "server closed"


async def test_daytime_sends_the_date_and_closes() -> None:
    server, _ = await start("daytime")
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
        reply = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert reply.endswith(b"\r\n") and abs(parse_ctime(reply) - time.time()) < 5


async def test_discard_reads_everything_and_answers_nothing() -> None:
    server, events = await start("discard")
    async with server:
        assert await tcp_exchange(server.address.port, b"x" * 100_000) == b""
        await events.wait()
    assert (events[0].bytes_in, events[0].bytes_out) == (100_000, 0)


async def test_chargen_streams_the_pattern_until_the_client_closes() -> None:
    server, events = await start("chargen")
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
        data = await asyncio.wait_for(reader.readexactly(3 * len(CHARGEN_CYCLE) + 100), 5)
        writer.close()
        await events.wait()
    assert data == chargen_lines(0, 3 * 95 + 2)[: len(data)]
    assert events[0].bytes_out >= len(data)
    assert events[0].ended in ("reset", "peer closed", "server closed")


async def test_http_answers_the_chapters_raw_request() -> None:
    server, _ = await start("http")
    async with server:
        raw = await tcp_exchange(server.address.port, b"GET / HTTP/1.0\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.0 200 OK"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body) and b"<h1>" in body


async def test_http_keeps_1_1_connections_alive() -> None:
    server, _ = await start("http")
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
        for path, status in (("/", b"200"), ("/missing", b"404"), ("/", b"200")):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.split(b" ")[1] == status
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            await asyncio.wait_for(reader.readexactly(length), 5)
        writer.write(b"BREW / HTCPCP/1.0\r\n\r\n")
        rest = await asyncio.wait_for(reader.read(), 5)  # 400, then closed
        assert rest.startswith(b"HTTP/1.1 400 ")
        writer.close()


async def test_echo_stops_reading_while_the_peer_does_not_read_then_resumes() -> None:
    server, _ = await start("echo")
    loop = asyncio.get_running_loop()
    async with server:
        sock = socket.create_connection(("127.0.0.1", server.address.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.setblocking(False)
        sent, stalls, chunk = 0, 0, bytes(65536)
        while stalls < 30:  # send until nothing moves any more: every buffer is full
            try:
                sent += sock.send(chunk)
                stalls = 0
            except BlockingIOError:
                stalls += 1
                await asyncio.sleep(0.01)
        (protocol,) = server._state.live
        assert protocol.bytes_in < sent  # it stopped reading ...
        assert protocol.transport.get_write_buffer_size() <= 1 << 20  # ... memory bounded
        sock.shutdown(socket.SHUT_WR)
        received = 0
        while data := await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 10):
            received += len(data)
        sock.close()
    assert received == sent


async def test_shutdown_closes_idle_http_keep_alive_connections_at_once() -> None:
    server, events = await start("http", grace=30)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"</html>\n"), 5)
    await asyncio.wait_for(server.aclose(), 10)  # does not wait the 30 s grace
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert [e.ended for e in events] == ["server closed"]


async def test_idle_timeout_counts_traffic_either_way() -> None:
    server, events = await start("chargen", idle_timeout=0.2)
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
        received, until = 0, time.monotonic() + 1.0  # five idle periods of server->client bytes
        while time.monotonic() < until:
            chunk = await asyncio.wait_for(reader.read(1 << 16), 5)
            assert chunk, "closed although bytes kept flowing"
            received += len(chunk)
        writer.close()
        await events.wait()
    assert events[0].ended != "idle timeout" and received > 0


# -- UDP --------------------------------------------------------------------------
@pytest.mark.parametrize("service", ["echo", "time", "daytime", "chargen"])
async def test_udp_services_answer_each_datagram(service: str) -> None:
    server, events = await start(service, "udp://127.0.0.1:0")
    async with server:
        assert server.address.scheme == "udp" and server.address.port
        replies = [await udp_ask(server.address.port, b"GET TIME %d" % i) for i in range(3)]
        await events.wait(3)
    if service == "echo":
        assert replies == [b"GET TIME 0", b"GET TIME 1", b"GET TIME 2"]
    elif service == "chargen":
        assert b"".join(replies) == chargen_lines(0, len(b"".join(replies)) // 74)
    else:
        for reply in replies:
            assert abs(parse_ctime(reply) - time.time()) < 5
    assert [e.ended for e in events] == ["datagram"] * 3
    assert events[0].peer.scheme == "udp"


async def test_udp_discard_answers_nothing() -> None:
    server, events = await start("discard", "udp://127.0.0.1:0")
    async with server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"into the void", ("127.0.0.1", server.address.port))
            await events.wait()
            with pytest.raises(BlockingIOError):  # loopback delivery is synchronous
                sock.recv(100)
    assert (events[0].bytes_in, events[0].bytes_out, events[0].detail) == (13, 0, "no reply")


async def test_udp_deny_drops_datagrams() -> None:
    server, events = await start("echo", "udp://127.0.0.1:0",
                                 acl=AccessList.from_strings(deny=["127.0.0.1"]))
    async with server:
        with pytest.raises(TimeoutError):
            await udp_ask(server.address.port, b"x", timeout=0.3)
    assert [e.ended for e in events] == ["refused"]


async def test_http_has_no_udp_variant_and_handlers_need_tcp() -> None:
    with pytest.raises(UsageError, match="no UDP variant"):
        await serve("http", "udp://127.0.0.1:0")

    async def handler(conn: Connection) -> None:
        pass

    with pytest.raises(UsageError, match="UDP"):
        await serve(handler, "udp://127.0.0.1:0")


# -- the handler API --------------------------------------------------------------------------
async def test_handler_gets_a_connection() -> None:
    async def upper(conn: Connection) -> None:
        while line := await conn.recv(1024):
            await conn.send(line.upper())

    server, events = await start(upper)
    async with server:
        assert await tcp_exchange(server.address.port, b"shout\n") == b"SHOUT\n"
        await events.wait()
    assert (events[0].service, events[0].bytes_in, events[0].bytes_out) == ("upper", 6, 6)
    assert events[0].ended == "peer closed"


async def test_a_failing_handler_is_reported_and_the_server_goes_on() -> None:
    async def broken(conn: Connection) -> None:
        await conn.recv()
        raise RuntimeError("boom")

    server, events = await start(broken)
    async with server:
        assert await tcp_exchange(server.address.port, b"x") == b""
        assert await tcp_exchange(server.address.port, b"y") == b""
        await events.wait(2)
    assert [(e.ended, e.detail) for e in events] == [("error", "RuntimeError: boom")] * 2


async def test_handler_idle_timeout_and_max_conns() -> None:
    async def silent(conn: Connection) -> None:
        await conn.recv()

    server, events = await start(silent, idle_timeout=0.3, max_conns=1)
    async with server:
        r1, w1 = await asyncio.open_connection("127.0.0.1", server.address.port)
        await async_wait_for(lambda: server.active == 1, 5, "one active connection")
        r2, w2 = await asyncio.open_connection("127.0.0.1", server.address.port)
        assert await asyncio.wait_for(_read_or_reset(r2), 5) == b""  # over --max-conns
        assert await asyncio.wait_for(_read_or_reset(r1), 5) == b""  # then idle timeout
        w1.close()
        w2.close()
        await events.wait(2)
    assert sorted(e.ended for e in events) == ["idle timeout", "refused"]


async def _read_or_reset(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


async def test_aclose_stops_accepting_at_once_and_waits_for_open_connections() -> None:
    server, events = await start("echo", grace=5)
    port = server.address.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"before")
    assert await asyncio.wait_for(reader.readexactly(6), 5) == b"before"
    closing = asyncio.ensure_future(server.aclose())
    await async_wait_for(lambda: not server.is_serving, 5, "the server to stop accepting")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"during")  # the open connection is still served during the grace period
    assert await asyncio.wait_for(reader.readexactly(6), 5) == b"during"
    assert not closing.done()
    writer.close()
    await asyncio.wait_for(closing, 5)
    assert [e.ended for e in events] == ["peer closed"]


async def test_aclose_cuts_off_connections_after_the_grace_period() -> None:
    server, events = await start("discard", grace=0.2)
    _, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
    await async_wait_for(lambda: server.active == 1, 5, "one active connection")
    await asyncio.wait_for(server.aclose(), 5)
    assert [e.ended for e in events] == ["shutdown"]
    writer.close()


async def test_ipv6_loopback() -> None:
    require(socket.has_ipv6, "no IPv6 in this Python")
    try:
        server, _ = await start("echo", "tcp://[::1]:0")
    except BindError as exc:
        require(False, f"no IPv6 loopback here: {exc}")
        raise  # not reached: require(False, ...) skips or fails
    async with server:
        assert server.address.host == "::1"
        assert await tcp_exchange(server.address.port, b"six", host="::1") == b"six"
    udp, _ = await start("echo", "udp://[::1]:0")
    async with udp:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            await loop.sock_sendto(sock, b"six", ("::1", udp.address.port))
            assert (await asyncio.wait_for(loop.sock_recvfrom(sock, 100), 5))[0] == b"six"


async def test_bind_error_when_the_port_is_taken() -> None:
    server, _ = await start("echo")
    async with server:
        with pytest.raises(BindError, match="address already in use"):
            await serve("echo", server.address)


# -- the CLI --------------------------------------------------------------------------
def echo_roundtrip(sock: socket.socket, payload: bytes = b"ping") -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def read_or_reset(sock: socket.socket) -> bytes:
    try:
        return sock.recv(100)
    except ConnectionResetError:
        return b""


def test_echo_cli_roundtrip_and_event_line(wirekit_proc) -> None:
    proc = wirekit_proc("serve", "echo", ":0")
    scheme, host, port = proc.listening()
    assert (scheme, host) == ("tcp", "127.0.0.1")
    assert sum("listening on" in line for line in proc.stderr_lines) == 1
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"hello wirekit\n")
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
    assert got == b"hello wirekit\n"
    proc.wait_line(r"127\.0\.0\.1:\d+ peer closed: in 14 B, out 14 B, \d+\.\d+s")
    assert proc.stop() == 0


def test_udp_cli(wirekit_proc) -> None:
    proc = wirekit_proc("serve", "time", "udp://127.0.0.1:0")
    scheme, host, port = proc.listening()
    assert scheme == "udp"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"GET TIME", (host, port))
        parse_ctime(sock.recv(100))
    assert proc.stop() == 0


def test_json_events(wirekit_proc) -> None:
    proc = wirekit_proc("serve", "echo", ":0", "--json")
    _, host, port = proc.listening()
    with socket.create_connection((host, port), timeout=5) as sock:
        assert echo_roundtrip(sock, b"json") == b"json"
    assert proc.stop() == 0
    assert proc.proc.stdout is not None
    objects = [json.loads(line) for line in proc.proc.stdout.read().splitlines()]
    assert objects[0] == {"event": "listening", "service": "echo",
                          "address": f"tcp://127.0.0.1:{port}"}
    assert objects[1]["event"] == "connection"
    assert (objects[1]["bytes_in"], objects[1]["bytes_out"]) == (4, 4)
    assert objects[1]["ended"] == "peer closed" and objects[1]["peer"].startswith("127.0.0.1:")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["finger", ":0"], 2, "unknown service 'finger' (choose from: time, echo"),
        (["echo", ":0", "--cert", "x.pem"], 2, "TLS options need a tls:// address"),
        (["echo", "127.0.0.1:99999"], 2, "out of range"),
        (["http", "udp://:0"], 2, "no UDP variant"),
        (["echo", ":0", "--deny", "nonsense"], 2, "is not an IP network"),
    ],
)
def test_usage_errors_exit_2_with_one_line(wirekit_proc, args, code, message) -> None:
    proc = wirekit_proc("serve", *args)
    assert proc.proc.wait(20) == code
    proc._reader.join(5)
    assert len(proc.stderr_lines) == 1 and message in proc.stderr, proc.stderr


def test_bind_failure_exits_1_with_one_line(wirekit_proc) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = wirekit_proc("serve", "echo", f":{port}")
        assert proc.proc.wait(20) == 1
    proc._reader.join(5)
    assert proc.stderr_lines == [
        f"wirekit: error: cannot listen on 127.0.0.1:{port}: address already in use"]


def test_max_conns_refuses_n_plus_1_then_serves_once_a_slot_frees(wirekit_proc) -> None:
    proc = wirekit_proc("serve", "echo", ":0", "--max-conns", "2")
    _, host, port = proc.listening()
    first = socket.create_connection((host, port), timeout=5)
    second = socket.create_connection((host, port), timeout=5)
    try:
        assert echo_roundtrip(first) == b"ping"
        assert echo_roundtrip(second) == b"ping"
        with socket.create_connection((host, port), timeout=5) as third:
            assert read_or_reset(third) == b""  # closed at once
        proc.wait_line(r"refused: at --max-conns 2")
        first.close()
        proc.wait_line(r"peer closed: in 4 B, out 4 B")
        with socket.create_connection((host, port), timeout=5) as fourth:
            assert echo_roundtrip(fourth, b"served") == b"served"
    finally:
        first.close()
        second.close()
    assert proc.stop() == 0


@pytest.mark.parametrize(("flags", "reason"), [
    (["--deny", "127.0.0.0/8"], "denied by --deny 127.0.0.0/8"),
    (["--allow", "10.0.0.0/8", "--allow", "::1"], "not in any --allow network"),
    (["--allow", "127.0.0.1", "--deny", "127.0.0.1/32"], "denied by --deny 127.0.0.1/32"),
])
def test_acl_refuses(wirekit_proc, flags, reason) -> None:
    proc = wirekit_proc("serve", "echo", ":0", *flags)
    _, host, port = proc.listening()
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"x")
        assert read_or_reset(sock) == b""
    proc.wait_line(f"refused: {reason}")
    assert proc.stop() == 0


def test_allow_admits(wirekit_proc) -> None:
    proc = wirekit_proc("serve", "echo", ":0", "--allow", "127.0.0.0/8", "--deny", "10.0.0.0/8")
    _, host, port = proc.listening()
    with socket.create_connection((host, port), timeout=5) as sock:
        assert echo_roundtrip(sock) == b"ping"
    assert proc.stop() == 0


def test_idle_timeout_fires(wirekit_proc) -> None:
    proc = wirekit_proc("serve", "time", ":0", "--idle-timeout", "0.3")
    _, host, port = proc.listening()
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"GET TIME")
        parse_ctime(sock.recv(100))
        assert read_or_reset(sock) == b""  # the server closed the quiet connection
    proc.wait_line(r"idle timeout: in 8 B, out 25 B")
    assert proc.stop() == 0


def test_sigterm_lets_a_transfer_in_flight_finish_byte_exact(wirekit_proc) -> None:
    proc = wirekit_proc("serve", "echo", ":0", "--grace", "30")
    _, host, port = proc.listening()
    payload = os.urandom(8 << 20)
    half = len(payload) // 2
    received = bytearray()
    sock = socket.create_connection((host, port), timeout=20)

    def read_all() -> None:
        while chunk := sock.recv(1 << 16):
            received.extend(chunk)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    try:
        sock.sendall(payload[:half])
        wait_for(lambda: len(received) > 0, 10, "the first echoed bytes")
        proc.proc.send_signal(signal.SIGTERM)
        proc.wait_line(r"stopping: waiting up to 30s for 1 open connection")
        with pytest.raises(ConnectionRefusedError):  # no longer accepting
            socket.create_connection((host, port), timeout=5).close()
        sock.sendall(payload[half:])
        sock.shutdown(socket.SHUT_WR)
        reader.join(30)
    finally:
        sock.close()
    assert not reader.is_alive()
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(payload).hexdigest()
    assert proc.proc.wait(10) == 0
    proc.wait_line(r"peer closed: in 8\.0 MiB, out 8\.0 MiB")


def test_sigterm_closes_what_is_still_open_after_grace(wirekit_proc) -> None:
    proc = wirekit_proc("serve", "time", ":0", "--grace", "0.3")
    _, host, port = proc.listening()
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"GET TIME")
        parse_ctime(sock.recv(100))  # admitted and served; now it just stays open
        assert proc.stop() == 0
        assert read_or_reset(sock) == b""
    proc.wait_line(r"shutdown: in 8 B, out 25 B")


# -- load (not timed) --------------------------------------------------------------------------
def test_2000_concurrent_time_clients(wirekit_proc) -> None:
    import resource

    clients = 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < clients + 200:
        require(hard == resource.RLIM_INFINITY or hard >= clients + 200,
                f"RLIMIT_NOFILE hard limit {hard} is below {clients + 200}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (clients + 200, hard))
    proc = wirekit_proc("serve", "time", ":0", "-q", "--max-conns", str(clients))
    _, host, port = proc.listening()

    async def one(all_open: asyncio.Event, count: list[int]) -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            count[0] += 1
            if count[0] == clients:
                all_open.set()
            await all_open.wait()  # every client is connected before anyone asks
            writer.write(b"GET TIME")
            return await reader.readline()
        finally:
            writer.close()

    async def main() -> list[bytes]:
        all_open, count = asyncio.Event(), [0]
        tasks = [one(all_open, count) for _ in range(clients)]
        return await asyncio.wait_for(asyncio.gather(*tasks), 60)

    replies = asyncio.run(main())
    assert len(replies) == clients
    now = time.time()
    for reply in replies:
        assert abs(parse_ctime(reply) - now) < 120
    assert proc.stop() == 0
