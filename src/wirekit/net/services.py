"""The built-in services of ``wirekit serve``: time, echo, discard, daytime, chargen, http.

Each service is an asyncio Protocol for TCP (see ``_served.ServedProtocol`` for the shared
admission / idle / event bookkeeping) and, where its RFC defines one, a pure function that
answers a UDP datagram.  The message logic (time's message splitting, chargen's pattern,
the HTTP request parser) is pure and tested in memory.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from wirekit.errors import UsageError
from wirekit.net._http import HttpError, HttpRequest, HttpRequestParser, http_error_response
from wirekit.net._http import http_response as http_response
from wirekit.net._served import ServedProtocol, ServerState

__all__ = [
    "CHARGEN_CYCLE",
    "SERVICES",
    "MessageSplitter",
    "Service",
    "chargen_datagram",
    "chargen_lines",
    "daytime_text",
    "get_service",
    "time_text",
]


# -- pure pieces ---------------------------------------------------------------------------
def time_text() -> bytes:
    """The ``time`` service's reply: ``time.ctime()`` and a newline."""
    return time.ctime().encode() + b"\n"


def daytime_text() -> bytes:
    """RFC 867 suggests a human-readable date on one line."""
    return time.ctime().encode() + b"\r\n"


class MessageSplitter:
    """Splits what a ``time`` client sends into messages.

    A message is a line (``\\n``, optionally ``\\r\\n``, stripped), or everything that
    arrived in one read when that read held no newline: the chapter's client sends
    ``GET TIME`` with no newline and waits for the reply.  A partial line after the last
    newline of a read waits for the rest; ``finish()`` returns it at end of stream.
    """

    MAX_LINE = 65536

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        if b"\n" not in data:
            message = self._pending + data
            self._pending = b""
            return [message.rstrip(b"\r")] if message else []
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > self.MAX_LINE:
            lines.append(self._pending)
            self._pending = b""
        return [line.rstrip(b"\r") for line in lines]

    def finish(self) -> bytes | None:
        pending, self._pending = self._pending, b""
        return pending.rstrip(b"\r") if pending else None


def is_end(message: bytes) -> bool:
    return message.strip().upper() == b"END"


def _build_cycle() -> bytes:
    printable = bytes(range(32, 127))  # the 95 printable ASCII characters
    doubled = printable + printable
    return b"".join(doubled[i : i + 72] + b"\r\n" for i in range(len(printable)))


#: RFC 864's pattern: 95 lines of 72 characters, each starting one character further on.
CHARGEN_CYCLE = _build_cycle()
CHARGEN_LINE = 74


def chargen_lines(start: int, count: int) -> bytes:
    """``count`` pattern lines beginning with line number ``start`` (mod 95)."""
    cycle_lines = len(CHARGEN_CYCLE) // CHARGEN_LINE
    out = []
    for i in range(start, start + count):
        offset = (i % cycle_lines) * CHARGEN_LINE
        out.append(CHARGEN_CYCLE[offset : offset + CHARGEN_LINE])
    return b"".join(out)


def chargen_datagram(start: int, rng: random.Random | None = None) -> bytes:
    """A UDP chargen reply: 1 to 6 whole lines (at most 444 bytes, RFC 864 allows 512)."""
    count = (rng or random).randint(1, 6)
    return chargen_lines(start, count)


# -- TCP protocols -----------------------------------------------------------------------------
class EchoProtocol(ServedProtocol):
    """RFC 862: send back everything; when the peer stops reading, stop reading from it."""

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        n = len(data)
        self.bytes_in += n
        self.transport.write(data)  # type: ignore[union-attr]
        self.bytes_out += n


class DiscardProtocol(ServedProtocol):
    """RFC 863: read and throw away."""

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        self.bytes_in += len(data)


class DaytimeProtocol(ServedProtocol):
    """RFC 867: send the date and time, then close."""

    def opened(self) -> None:
        reply = daytime_text()
        self.transport.write(reply)  # type: ignore[union-attr]
        self.bytes_out += len(reply)
        self.close()

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.bytes_in += len(data)


class ChargenProtocol(ServedProtocol):
    """RFC 864: stream the rotating pattern until the peer closes, at the peer's pace."""

    BLOCK = CHARGEN_CYCLE * 9  # about 62 KiB; whole cycles so blocks join seamlessly
    BURST = 16  # blocks per loop iteration, so one fast reader cannot starve the others

    def opened(self) -> None:
        self._paused = False
        self._produce()

    def _produce(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        block = self.BLOCK
        for _ in range(self.BURST):
            if self._paused:
                break
            transport.write(block)
            self.bytes_out += len(block)
        if not self._paused:
            self.state.loop.call_soon(self._produce)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._produce()

    def eof_received(self) -> bool:
        self.peer_eof = True
        return True  # keep streaming until the peer closes entirely

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.bytes_in += len(data)  # RFC 864: received data is thrown away


class TimeProtocol(ServedProtocol):
    """The chapter's time server: every message gets ``time.ctime()``; ``END`` closes."""

    def opened(self) -> None:
        self._splitter = MessageSplitter()

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        self.bytes_in += len(data)
        self._answer(self._splitter.feed(data))

    def _answer(self, messages: list[bytes]) -> None:
        transport = self.transport
        for message in messages:
            if transport is None or transport.is_closing():
                return
            if is_end(message):
                self.close()
                return
            reply = time_text()
            transport.write(reply)
            self.bytes_out += len(reply)

    def eof_received(self) -> None:
        self.peer_eof = True
        last = self._splitter.finish()
        if last is not None:
            self._answer([last])
        return None


class HttpProtocol(ServedProtocol):
    """A minimal HTTP/1.0 and 1.1 server: ``GET /`` is a small page, keep-alive for 1.1."""

    def opened(self) -> None:
        self._parser = HttpRequestParser()
        self._draining = False

    def draining(self) -> None:
        # An idle keep-alive connection has nothing to finish: close it now, like nginx.
        self._draining = True
        if not self._parser.busy:
            self.close()

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        self.bytes_in += len(data)
        transport = self.transport
        for item in self._parser.feed(data):
            if transport is None or transport.is_closing():
                return
            if isinstance(item, HttpError):
                reply = http_error_response(item)
                keep_alive = False
            else:
                assert isinstance(item, HttpRequest)
                reply, keep_alive = http_response(item)
            transport.write(reply)
            self.bytes_out += len(reply)
            if not keep_alive or self._draining:
                self.close()
                return

    def eof_received(self) -> None:
        self.peer_eof = True
        return None


# -- UDP answers -----------------------------------------------------------------------------
class _ChargenUdp:
    def __init__(self) -> None:
        self._line = 0
        self._rng = random.Random()

    def __call__(self, data: bytes) -> bytes:
        reply = chargen_datagram(self._line, self._rng)
        self._line += len(reply) // CHARGEN_LINE
        return reply


# -- the registry -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Service:
    name: str
    summary: str
    protocol: type[ServedProtocol]
    #: makes the per-listener UDP answer function (datagram -> reply or None); None: no UDP
    udp: Callable[[], Callable[[bytes], bytes | None]] | None

    def tcp_factory(self, state: ServerState) -> Callable[[], ServedProtocol]:
        protocol = self.protocol
        return lambda: protocol(state)


SERVICES: dict[str, Service] = {
    s.name: s
    for s in (
        Service("time", "the chapter's time server: each message gets time.ctime(); END closes",
                TimeProtocol, lambda: lambda data: time_text()),
        Service("echo", "RFC 862: sends back what it receives", EchoProtocol,
                lambda: lambda data: data),
        Service("discard", "RFC 863: reads and throws away", DiscardProtocol,
                lambda: lambda data: None),
        Service("daytime", "RFC 867: sends the date and time, then closes", DaytimeProtocol,
                lambda: lambda data: daytime_text()),
        Service("chargen", "RFC 864: streams the rotating 72-character line pattern",
                ChargenProtocol, _ChargenUdp),
        Service("http", "minimal HTTP/1.0 and 1.1: GET / answers a small page",
                HttpProtocol, None),
    )
}


def get_service(name: str) -> Service:
    try:
        return SERVICES[name.lower()]
    except KeyError:
        raise UsageError(
            f"unknown service {name!r} (choose from: {', '.join(SERVICES)})"
        ) from None
