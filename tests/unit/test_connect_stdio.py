"""Reading stdin asynchronously whatever it is: pipe, regular file, /dev/null, socket."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from wirekit.net.stdio import open_fd_reader


async def _drain(fd: int) -> tuple[str, bytes]:
    reader = await open_fd_reader(fd)
    chunks = []
    try:
        while chunk := await asyncio.wait_for(reader.read(), 10):
            chunks.append(chunk)
        assert await reader.read() == b""  # EOF stays EOF
    finally:
        await reader.aclose()
    return reader.kind, b"".join(chunks)


async def test_regular_file(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        kind, got = await _drain(fd)
    finally:
        os.close(fd)
    assert kind == "thread"
    assert got == data


async def test_dev_null() -> None:
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        assert await _drain(fd) == ("thread", b"")
    finally:
        os.close(fd)


async def test_pipe_and_blocking_mode_restored() -> None:
    rfd, wfd = os.pipe()
    data = os.urandom(200_000)

    async def feed() -> None:
        await asyncio.to_thread(_write_all, wfd, data)

    try:
        drained, _ = await asyncio.gather(_drain(rfd), feed())
        assert drained == ("pipe", data)
        assert os.get_blocking(rfd)
    finally:
        os.close(rfd)


def _write_all(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as f:
        f.write(data)


async def test_socket() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"over a socket")
        b.shutdown(socket.SHUT_WR)
        assert await _drain(a.fileno()) == ("pipe", b"over a socket")
