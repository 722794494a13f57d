"""``wirekit serve`` and ``wirekit.serve`` over loopback: every service, TCP and UDP, limits."""

from __future__ import annotations

import asyncio
import socket

from wirekit.net.server import serve


async def _tcp_exchange(port: int, payload: bytes, *, read_until_close: bool = True,
                        timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def test_echo_library_roundtrip() -> None:
    async with await serve("echo", "tcp://127.0.0.1:0") as server:
        assert server.address.port != 0
        data = bytes(range(256)) * 100
        assert await _tcp_exchange(server.address.port, data) == data


def test_echo_cli_roundtrip(wirekit_proc) -> None:
    proc = wirekit_proc("serve", "echo", ":0")
    _, host, port = proc.listening()
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"hello wirekit\n")
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
    assert got == b"hello wirekit\n"
    proc.wait_line(r"127\.0\.0\.1:\d+ peer closed: in 14 B, out 14 B")
    assert proc.stop() == 0
