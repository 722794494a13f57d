"""Reading a file descriptor (stdin) asynchronously, whatever it is.

Pipes and sockets are read by the event loop itself (``connect_read_pipe``).  Everything
else cannot be: epoll refuses regular files and ``/dev/null`` (EPERM), and putting a
terminal in non-blocking mode would leak into the user's shell.  Those are read by one
daemon thread that blocks in ``os.read`` and hands chunks to the loop; a credit semaphore
keeps at most a few chunks in flight, so ``< hugefile`` does not land in memory at once.
The thread is a daemon because a read from a terminal cannot be interrupted: if the
session ends while it waits for a line, the process exit reaps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading

__all__ = ["CHUNK", "FdReader", "open_fd_reader"]

CHUNK = 65536
_CREDITS = 4


class FdReader:
    """``await read()`` returns the next chunk, ``b""`` at end of input."""

    kind = "fd"

    async def read(self) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    async def aclose(self) -> None:  # pragma: no cover - interface
        return None


class _PipeReader(FdReader):
    kind = "pipe"

    def __init__(self, fd: int) -> None:
        self._origin = fd  # O_NONBLOCK lives in the file description all dups share
        self._blocking = os.get_blocking(fd)
        self._fd = os.dup(fd)
        self._file = os.fdopen(self._fd, "rb", buffering=0)
        self._reader = asyncio.StreamReader(limit=CHUNK * 4)
        self._transport: asyncio.ReadTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        protocol = asyncio.StreamReaderProtocol(self._reader)
        self._transport, _ = await loop.connect_read_pipe(lambda: protocol, self._file)

    async def read(self) -> bytes:
        return await self._reader.read(CHUNK)

    async def aclose(self) -> None:
        if self._transport is not None:
            # The pipe's file description is shared with whoever gave it to us.
            with contextlib.suppress(OSError):
                os.set_blocking(self._origin, self._blocking)
            self._transport.close()
            self._transport = None
            await asyncio.sleep(0)
        elif not self._file.closed:
            self._file.close()


class _ThreadReader(FdReader):
    kind = "thread"

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self._credits = threading.Semaphore(_CREDITS)
        self._stop = threading.Event()
        self._eof = False
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._run, args=(loop,), name="wirekit-stdin", daemon=True
        )
        self._thread.start()

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        while not self._stop.is_set():
            if not self._credits.acquire(timeout=0.2):
                continue
            item: bytes | BaseException
            try:
                item = os.read(self._fd, CHUNK)
            except OSError as exc:
                item = exc
            if self._stop.is_set():
                return
            try:
                loop.call_soon_threadsafe(self._queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody wants our bytes any more
                return
            if not isinstance(item, bytes) or not item:
                return

    async def read(self) -> bytes:
        if self._eof:
            return b""
        item = await self._queue.get()
        self._credits.release()
        if isinstance(item, BaseException):
            raise item
        if not item:
            self._eof = True
        return item

    async def aclose(self) -> None:
        self._stop.set()
        self._credits.release()


async def open_fd_reader(fd: int = 0) -> FdReader:
    """An asynchronous reader of ``fd`` suited to what it is (pipe, file, device, tty)."""
    mode = os.fstat(fd).st_mode
    reader: _PipeReader | _ThreadReader
    if (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)) and not os.isatty(fd):
        reader = _PipeReader(fd)
        try:
            await reader.start()
            return reader
        except (OSError, ValueError, NotImplementedError):
            await reader.aclose()  # an unusual loop or pipe: fall back to the thread
    reader = _ThreadReader(fd)
    await reader.start()
    return reader
