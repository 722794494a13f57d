"""The "direct" echo server: ``python -m bench.echod PORT``.

The least an event-loop echo server can do: a uvloop asyncio Protocol that writes back what
it reads, closes on EOF, and nothing else (no limits, no logging, no ACL, no flow control).
It is the ceiling for the echo benchmark and the target behind every relay in the forward
benchmark.
"""

from __future__ import annotations

import asyncio
import socket
import sys

from bench.loadgen import _new_loop


class Echo(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", port, backlog=4096, reuse_address=True)
    print(f"listening on tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}",
          file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))


if __name__ == "__main__":
    main()
