"""A target given by name: resolved once per RESOLVE_TTL, a stale cached address retried."""

from __future__ import annotations

import asyncio

from wirekit.net.forward import forward


async def _echo_server() -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0)


async def _round_trip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    writer.write_eof()
    got = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return got


async def test_named_target_every_connection_relayed() -> None:
    server = await _echo_server()
    port = server.sockets[0].getsockname()[1]
    fwd = await forward("127.0.0.1:0", f"localhost:{port}")
    try:
        for i in range(5):
            assert await _round_trip(fwd.address.port, b"ping %d" % i) == b"ping %d" % i
        assert fwd.failed == 0
    finally:
        await fwd.aclose(0)
        server.close()


async def test_stale_cached_address_is_retried_by_name() -> None:
    server = await _echo_server()  # listens on 127.0.0.1 only: 127.0.0.2 is refused
    port = server.sockets[0].getsockname()[1]
    fwd = await forward("127.0.0.1:0", f"localhost:{port}")
    try:
        assert await _round_trip(fwd.address.port, b"first") == b"first"
        loop = asyncio.get_running_loop()
        fwd._cached = ("127.0.0.2", loop.time() + 60)  # the target "moved" since
        assert await _round_trip(fwd.address.port, b"second") == b"second"
        assert fwd.failed == 0
        assert fwd._cached is not None and fwd._cached[0] == "127.0.0.1"
    finally:
        await fwd.aclose(0)
        server.close()
