"""The chapter's first half: a TCP time server and client, raw HTTP, and UDP."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

import wirekit
from wirekit.tour.narrator import Narrator
from wirekit.tour.recording import DEFAULT_PATH

if TYPE_CHECKING:
    from wirekit.address import Address
    from wirekit.capture.recorder import Recorder
    from wirekit.net.stream import Connection

__all__ = ["raw_http", "tcp_time", "udp_time"]


def _check_ctime(reply: bytes) -> str:
    text = reply.decode().strip()
    time.strptime(text, "%a %b %d %H:%M:%S %Y")  # raises ValueError if it is not ctime()
    return text


async def ask_time(n: Narrator, conn: Connection) -> tuple[str, bytes]:
    """Send ``GET TIME`` on ``conn`` and narrate both ways: the server's time and its reply
    as it came (an AssertionError, which the tour reports as a failed step, if the reply is
    not a ctime())."""
    await conn.send(b"GET TIME")
    n.sent(b"GET TIME")
    reply = await conn.recv(timeout=5)
    n.received(reply, "server")
    try:
        return _check_ctime(reply), reply
    except ValueError:
        raise AssertionError(f"expected a time.ctime() reply, got {reply!r}") from None


def _recorder(n: Narrator) -> Recorder | None:
    return n.recording.recorder if n.recording is not None else None


def _record_flag(n: Narrator) -> str:
    return f" --record {DEFAULT_PATH}" if n.recording is not None else ""


async def tcp_time(n: Narrator) -> None:
    n.step("Start the time server (the chapter's port is 12345; the tour lets the kernel pick)")
    n.command(f"wirekit serve time :12345{_record_flag(n)}")
    async with await wirekit.serve("time", "tcp://127.0.0.1:0",
                                   record=_recorder(n)) as server:
        n.say(f"listening on {server.address}")
        if n.recording is not None:
            n.recording.tcp[server.address.port] = "time"

        n.step("The chapter's client: connect, send GET TIME, read the reply")
        n.command(f"wirekit connect {server.address.hostport} --send 'GET TIME' --no-stdin")
        async with await wirekit.connect(server.address) as conn:
            n.say(f"connected from {conn.local.hostport} to {conn.peer.hostport}")
            stamp, _ = await ask_time(n, conn)
            n.ok(f"the server's clock says {stamp}")

            n.step("Send END: the server closes the connection")
            await conn.send(b"END")
            n.sent(b"END")
            rest = await conn.recv(timeout=5)
            if rest:
                raise AssertionError(f"expected the server to close, got {rest!r}")
            n.ok("the server closed its side (recv returned b'')")


async def raw_http(n: Narrator) -> None:
    n.step("Start a minimal HTTP server")
    n.command(f"wirekit serve http :8080{_record_flag(n)}")
    async with await wirekit.serve("http", "tcp://127.0.0.1:0",
                                   record=_recorder(n)) as server:
        n.say(f"listening on {server.address}")
        if n.recording is not None:
            n.recording.tcp[server.address.port] = "http"
            n.recording.http_uris.append("/")
        n.step("Speak HTTP/1.0 by hand, as the chapter does")
        request = b"GET / HTTP/1.0\r\n\r\n"
        n.command(f"wirekit connect {server.address.hostport} --send 'GET / HTTP/1.0\\r\\n\\r\\n'")
        async with await wirekit.connect(server.address) as conn:
            await conn.send(request)
            n.sent(request)
            response = await conn.recv_all(timeout=5)
        head, _, body = response.partition(b"\r\n\r\n")
        n.received(head + b"\r\n\r\n", "server")
        status = head.split(b"\r\n", 1)[0]
        if not status.startswith(b"HTTP/1.") or b" 200 " not in status + b" ":
            raise AssertionError(f"unexpected status line {status!r}")
        n.ok(f"{status.decode()} with a {len(body)}-byte body; HTTP/1.0 means the server "
             "closes after the response")


async def udp_time(n: Narrator) -> None:
    n.step("Start the time service over UDP")
    n.command("wirekit serve time udp://:12345")
    async with await wirekit.serve("time", "udp://127.0.0.1:0") as server:
        n.say(f"listening on {server.address}")
        async with contextlib.AsyncExitStack() as stack:
            target = server.address
            if n.recording is not None:
                target = await _recording_forward(n, stack, server.address)
            n.step("One datagram out, one datagram back; no handshake, no connection")
            n.command(f"wirekit connect udp://{target.hostport} --send 'GET TIME'")
            reply = await wirekit.udp_request(target, b"GET TIME", timeout=2, retries=3)
            n.sent(b"GET TIME")
            n.received(reply, "server")
            n.ok(f"the server's clock says {_check_ctime(reply)}; had the datagram been lost, "
                 "udp_request would have sent it again")


async def _recording_forward(n: Narrator, stack: contextlib.AsyncExitStack,
                             service: Address) -> Address:
    """The datagrams go through a recording UDP forward (``serve udp://`` does not record
    yet); the recorded leg is the client <-> the forward, a real UDP exchange."""
    assert n.recording is not None
    n.step("For the recording: the datagrams go through a recording UDP forward")
    n.command(f"wirekit forward udp://:12346 udp://:{service.port}{_record_flag(n)}")
    fwd = await wirekit.forward("udp://127.0.0.1:0", service, record=n.recording.recorder)
    await stack.enter_async_context(fwd)
    n.say(f"forwarding {fwd.address} -> {service}; the tour's client talks to the forward")
    n.recording.udp.append(fwd.address.port)
    address: Address = fwd.address
    return address
