"""Client sessions: what ``wirekit connect`` does between connecting and exiting.

Theory of operation.  A session is two tasks in one TaskGroup around a connection:

    TCP   sends, then source --pump_out--> socket --pump_in--> on_data
          source EOF          -> shutdown_write (half-close); pump_in goes on reading
          peer EOF            -> the peer's half-close: pump_out goes on until its input
                                 ends (ncat and socat do the same) or a send fails because
                                 the peer is gone; interactive sessions end at once
          ``wait`` s of silence once our sending is done -> the session ends normally
          a failed send after the peer closed cleanly is not an error

    UDP   each send / source line is one datagram; pump_in hands every datagram to
          on_data as it arrives; pump_out waits ``timeout`` for a reply to each datagram,
          resends up to ``retries`` times, then gives up with NoReply.  Once all is sent
          and answered it lingers ``wait`` s for stragglers.

With ``prompt`` (a terminal) the session takes turns like the textbook's client: prompt,
read a line, send it, wait a moment for the reply to print, prompt again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wirekit.errors import ConnectionReset, NoReply, ReadTimeout, TLSError, UsageError
from wirekit.net.stdio import CHUNK, FdReader
from wirekit.net.stream import Connection
from wirekit.net.udp import MAX_DATAGRAM, UDPClient, no_reply_message

__all__ = ["Payload", "SessionResult", "tcp_session", "udp_session"]

Payload = bytes | Path  # literal bytes, or a file whose content is sent
Sink = Callable[[bytes], None]

REPLY_PAUSE = 1.0  # interactive: how long to wait for a reply before prompting again


@dataclass(frozen=True, slots=True)
class SessionResult:
    sent: int  # bytes (TCP) or datagrams (UDP)
    received: int
    duration: float
    ended: str  # "peer closed", "idle", "input ended"


def _noop(_: bytes) -> None:
    return None


def _file_chunks(path: Path, size: int = CHUNK) -> Iterator[bytes]:
    try:
        with path.open("rb") as f:
            while chunk := f.read(size):
                yield chunk
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None


async def _pair(first: Coroutine[Any, Any, None], second: Callable[[asyncio.Task[None]],
                Coroutine[Any, Any, None]]) -> None:
    """Run ``first`` and ``second(first_task)`` together; raise the first real error bare."""
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(first)
            tg.create_task(second(task))
    except BaseExceptionGroup as group:
        leaves: list[BaseException] = []

        def collect(g: BaseExceptionGroup[BaseException]) -> None:
            for e in g.exceptions:
                if isinstance(e, BaseExceptionGroup):
                    collect(e)
                else:
                    leaves.append(e)

        collect(group)
        raise leaves[0] from None


async def tcp_session(
    conn: Connection,
    *,
    sends: Sequence[Payload] = (),
    source: FdReader | None = None,
    on_data: Sink = _noop,
    on_sent: Sink = _noop,
    wait: float | None = None,
    prompt: Callable[[], None] | None = None,
) -> SessionResult:
    """Pump ``sends`` and then ``source`` into ``conn`` and everything received to ``on_data``.

    Without a ``source`` the write side stays open (some servers hang up on a FIN) and the
    session ends when the peer closes or, with ``wait``, after that long without data.
    """
    start = time.monotonic()
    sending_done = asyncio.Event()
    received = asyncio.Event()
    ended = "peer closed"
    write_failure: ConnectionReset | None = None

    async def send(data: bytes) -> None:
        await conn.send(data)
        on_sent(data)

    async def pump_out() -> None:
        nonlocal write_failure
        try:
            for item in sends:
                if isinstance(item, Path):
                    for chunk in _file_chunks(item):
                        await send(chunk)
                else:
                    await send(item)
            if source is not None:
                await _pump_source(source)
                await conn.shutdown_write()
        except ConnectionReset as exc:
            write_failure = exc  # pump_in finds out whether the peer closed cleanly
        sending_done.set()

    async def _pump_source(reader: FdReader) -> None:
        while True:
            if prompt is not None:
                prompt()
            chunk = await reader.read()
            if not chunk:
                return
            received.clear()
            await send(chunk)
            if prompt is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(received.wait(), REPLY_PAUSE)

    async def pump_in(out_task: asyncio.Task[None]) -> None:
        nonlocal ended
        while True:
            try:
                data = await conn.recv(timeout=wait)
            except ReadTimeout:
                if sending_done.is_set():
                    ended = "idle"
                    break
                continue
            if not data:
                break
            on_data(data)
            received.set()
        if prompt is not None:
            out_task.cancel()  # a person is waiting: the peer hung up, so are we

    try:
        await _pair(pump_out(), pump_in)
    except TLSError as exc:  # e.g. a TLS 1.3 server refusing our client certificate
        from wirekit.net.tls import explain_alert

        explained = explain_alert(exc)
        if explained is exc:
            raise
        raise explained from exc
    if write_failure is not None and ended != "peer closed":
        raise write_failure
    return SessionResult(conn.bytes_sent, conn.bytes_received, time.monotonic() - start, ended)


class _Lines:
    """Split a reader's chunks into lines (each keeps its ``\\n``; the last may lack it)."""

    def __init__(self, reader: FdReader) -> None:
        self._reader = reader
        self._buffer = b""
        self._eof = False

    async def next(self) -> bytes:
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line, self._buffer = self._buffer[: newline + 1], self._buffer[newline + 1 :]
                return line
            if self._eof:
                line, self._buffer = self._buffer, b""
                return line
            chunk = await self._reader.read()
            if not chunk:
                self._eof = True
            self._buffer += chunk
            if len(self._buffer) > MAX_DATAGRAM and b"\n" not in self._buffer:
                raise UsageError(
                    f"an input line is longer than a UDP datagram can be ({MAX_DATAGRAM} bytes)"
                )


async def udp_session(
    client: UDPClient,
    *,
    sends: Sequence[Payload] = (),
    source: FdReader | None = None,
    on_data: Sink = _noop,
    on_sent: Sink = _noop,
    on_retry: Callable[[int, int], None] | None = None,
    timeout: float = 2.0,
    retries: int = 2,
    wait: float = 0.0,
    prompt: Callable[[], None] | None = None,
) -> SessionResult:
    """Send each payload and source line as a datagram; every reply goes to ``on_data``."""
    if retries < 0:
        raise UsageError(f"--retries must be 0 or more, not {retries}")
    start = time.monotonic()
    arrived = asyncio.Event()
    tries = retries + 1

    async def exchange(datagram: bytes) -> None:
        for attempt in range(1, tries + 1):
            arrived.clear()
            client.send(datagram)
            on_sent(datagram)
            try:
                await asyncio.wait_for(arrived.wait(), timeout)
                return
            except TimeoutError:
                if attempt < tries and on_retry is not None:
                    on_retry(attempt + 1, tries)
        raise NoReply(no_reply_message(client.peer, tries), host=client.peer.host,
                      port=client.peer.port, tries=tries)

    async def pump_out(in_task: asyncio.Task[None]) -> None:
        for item in sends:
            await exchange(_read_datagram(item) if isinstance(item, Path) else item)
        if source is not None:
            lines = _Lines(source)
            while True:
                if prompt is not None:
                    prompt()
                line = await lines.next()
                if not line:
                    break
                await exchange(line)
        while wait > 0:  # linger for late or extra replies
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), wait)
            except TimeoutError:
                break
        in_task.cancel()

    async def pump_in() -> None:
        while True:
            data = await client.recv()
            on_data(data)
            arrived.set()

    await _pair(pump_in(), pump_out)
    return SessionResult(client.datagrams_sent, client.datagrams_received,
                         time.monotonic() - start, "input ended")


def _read_datagram(path: Path) -> bytes:
    data = b"".join(_file_chunks(path))
    if len(data) > MAX_DATAGRAM:
        raise UsageError(
            f"{str(path)!r} holds {len(data)} bytes, more than one UDP datagram can carry "
            f"({MAX_DATAGRAM})"
        )
    return data
