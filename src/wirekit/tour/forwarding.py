"""The chapter's port forwarding: a service (its FTP server, here the time service) reached
only through ``wirekit forward``, and everything the forwarder sees on the way."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import wirekit
from wirekit.net.forward import ConnectionEnded, ConnInfo
from wirekit.net.relay import DOWNSTREAM, UPSTREAM, Tap
from wirekit.tour.basics import ask_time
from wirekit.tour.narrator import Narrator

__all__ = ["Chunk", "Recorder", "forwarded_time", "show_chunk"]

KEEP_BYTES = 256 * 1024  # per recorder: the tour's exchanges are far smaller


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk a tap saw; ``data == b""`` is a half-close (FIN) in that direction."""

    direction: str
    data: bytes
    timestamp: float


class Recorder:
    """A tap factory for ``wirekit.forward(tap=...)`` that keeps every chunk (bounded)."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self._kept = 0

    def __call__(self, info: ConnInfo) -> Tap:
        def tap(direction: str, data: bytes, timestamp: float) -> None:
            if self._kept + len(data) <= KEEP_BYTES:
                self._kept += len(data)
                self.chunks.append(Chunk(direction, data, timestamp))

        return tap

    def joined(self, direction: str) -> bytes:
        return b"".join(c.data for c in self.chunks if c.direction == direction)


def show_chunk(chunk: Chunk, width: int = 24) -> str:
    """``>> 8 B 'GET TIME'`` (client to target) or ``<< 64 B hex 5f 0a ...`` (binary)."""
    arrow = ">>" if chunk.direction == UPSTREAM else "<<"
    data = chunk.data
    if not data:
        return f"{arrow} EOF"
    head = data[:width]
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    if printable >= len(head) * 0.9:
        shown = repr(head)[1:] + ("…" if len(data) > width else "")
    else:
        shown = "hex " + head[:6].hex(" ") + " …"
    return f"{arrow} {len(data)} B {shown}"


async def forwarded_time(n: Narrator) -> None:
    n.step("The service the chapter hides behind a forward (its FTP server; here, the time "
           "service)")
    n.command("wirekit serve time :2121")
    async with await wirekit.serve("time", "tcp://127.0.0.1:0") as server:
        n.say(f"listening on {server.address}")

        n.step("Put wirekit forward in front of it; clients only ever see the forward's port")
        recorder = Recorder()
        ended: list[ConnectionEnded] = []
        done = asyncio.Event()

        def on_event(event: ConnectionEnded) -> None:
            ended.append(event)
            done.set()

        target = server.address.hostport
        n.command(f"wirekit forward :2100 {target} --hexdump")
        fwd = await wirekit.forward("tcp://127.0.0.1:0", target, tap=recorder,
                                    on_event=on_event)
        try:
            n.say(f"listening on {fwd.address}, forwarding to {target}")
            reply = await _talk(n, fwd.address.hostport)
            await asyncio.wait_for(done.wait(), 5)
        finally:
            await fwd.aclose(1.0)
        _show_connection(n, ended[0])
        _show_tap(n, recorder, reply)


async def _talk(n: Narrator, via: str) -> bytes:
    n.step("The client talks to the forward as if it were the service")
    n.command(f"wirekit connect {via} --send 'GET TIME' --no-stdin")
    async with await wirekit.connect(f"tcp://{via}") as conn:
        stamp, reply = await ask_time(n, conn)
        n.ok(f"the service answered through the forward: {stamp}")
        await conn.send(b"END")
        n.sent(b"END")
        rest = await conn.recv(timeout=5)
        if rest:
            raise AssertionError(f"expected the service to close, got {rest!r}")
    return reply


def _show_connection(n: Narrator, ev: ConnectionEnded) -> None:
    n.step("The forward's line for the finished connection")
    n.say(f"{ev.client} -> {ev.target} {ev.reason}: {ev.bytes_up} B up, "
          f"{ev.bytes_down} B down, {ev.duration:.3f}s")
    if ev.reason != "closed":
        raise AssertionError(f"expected the connection to end 'closed', got {ev.reason!r}")
    if ev.bytes_up != len(b"GET TIMEEND"):
        raise AssertionError(f"expected 11 bytes up (GET TIME, END), got {ev.bytes_up}")
    n.ok(f"ended cleanly (closed): {ev.bytes_up} B up (GET TIME + END), "
         f"{ev.bytes_down} B down (the time)")


def _show_tap(n: Narrator, recorder: Recorder, reply: bytes) -> None:
    n.step("What the forwarder saw: every chunk, in the clear (>> client to service, "
           "<< back)")
    for chunk in recorder.chunks[:8]:
        n.say(show_chunk(chunk))
    if b"GET TIME" not in recorder.joined(UPSTREAM) or reply not in recorder.joined(DOWNSTREAM):
        raise AssertionError("the tap did not see the request and the reply")
    n.ok("a forwarder (or anyone on its path) reads the request and the reply: plaintext, "
         "like the chapter's FTP password")
