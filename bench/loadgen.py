"""The load generator: ``python -m bench.loadgen MODE PORT [options]``, one JSON line out.

It runs in its own process so the harness's bookkeeping never competes with it, and it is
kept small so the client is not the bottleneck:

- ``connrate``: C workers each loop connect -> send N bytes -> read them back -> close
  (asyncio Protocols on uvloop, no streams). Reports connections per second.
- ``pingpong``: one connection, blocking socket with TCP_NODELAY, N-byte request, wait for
  the N-byte reply, repeat. Reports p50/p99 round-trip time and round trips per second.
  A blocking socket is the cheapest client there is: no event loop between the syscalls.
- ``rr``: C connections on uvloop, each with one N-byte request in flight; the reply
  triggers the next request right in ``data_received``. Reports round trips per second.
- ``hold``: open C connections, send one byte on each and wait for its echo (so every
  relay pair is fully established), print ``{"ready": ..}``, then hold them idle until
  stdin closes; then close them all.

Every mode measures for a fixed ``--duration`` after a short ``--warmup`` and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import time

from bench.table import percentile

HOST = "127.0.0.1"


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# -- connrate -------------------------------------------------------------------------------


class _OneShot(asyncio.Protocol):
    __slots__ = ("done", "got", "payload", "transport")

    def __init__(self, payload: bytes, done: asyncio.Future[bool]) -> None:
        self.payload = payload
        self.done = done
        self.got = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.got >= len(self.payload) and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.got >= len(self.payload))


async def connrate(port: int, duration: float, warmup: float, concurrency: int,
                   size: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    payload = b"x" * size
    start = time.perf_counter()
    t0, t_end = start + warmup, start + warmup + duration
    counts = {"ok": 0, "errors": 0}

    async def worker() -> None:
        while (now := time.perf_counter()) < t_end:
            done: asyncio.Future[bool] = loop.create_future()
            try:
                await loop.create_connection(lambda d=done: _OneShot(payload, d), HOST, port)
                ok = await asyncio.wait_for(done, 10)
            except (OSError, TimeoutError):
                ok = False
            if now >= t0:
                counts["ok" if ok else "errors"] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"conn_per_s": counts["ok"] / elapsed, "count": counts["ok"],
            "errors": counts["errors"]}


# -- rr -------------------------------------------------------------------------------------


class _PingPong(asyncio.Protocol):
    __slots__ = ("count", "done", "got", "payload", "stop_at", "transport")

    def __init__(self, payload: bytes, stop_at: float, done: asyncio.Future[None]) -> None:
        self.payload = payload
        self.stop_at = stop_at
        self.done = done
        self.got = 0
        self.count = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.got < len(self.payload):
            return
        self.got -= len(self.payload)
        self.count += 1
        assert self.transport is not None
        if time.perf_counter() < self.stop_at:
            self.transport.write(self.payload)
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def rr(port: int, duration: float, warmup: float, conns: int,
             size: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    payload = b"x" * size
    stop_at = time.perf_counter() + 3600
    protos: list[_PingPong] = []
    for _ in range(conns):
        done: asyncio.Future[None] = loop.create_future()
        _, proto = await loop.create_connection(
            lambda d=done: _PingPong(payload, stop_at, d), HOST, port)  # type: ignore[misc]
        protos.append(proto)
    for p in protos:
        assert p.transport is not None
        p.transport.write(payload)
    await asyncio.sleep(warmup)
    before = sum(p.count for p in protos)
    t0 = time.perf_counter()
    await asyncio.sleep(duration)
    after = sum(p.count for p in protos)
    elapsed = time.perf_counter() - t0
    for p in protos:
        p.stop_at = 0.0
    await asyncio.wait_for(asyncio.gather(*(p.done for p in protos)), 10)
    return {"rr_per_s": (after - before) / elapsed, "conns": conns}


# -- pingpong -------------------------------------------------------------------------------


def pingpong(port: int, duration: float, warmup: float, size: int) -> dict[str, float]:
    payload = b"x" * size
    lat: list[int] = []
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        send, recv, clock = s.send, s.recv, time.perf_counter_ns
        record = lat.append
        warm_end = time.perf_counter() + warmup
        end = warm_end + duration
        measured_from = time.perf_counter()
        n = 0
        while True:
            t = clock()
            send(payload)
            got = len(recv(65536))
            while got < size:
                chunk = recv(65536)
                if not chunk:
                    raise ConnectionError("peer closed during ping-pong")
                got += len(chunk)
            record(clock() - t)
            n += 1
            if n & 255 == 0:
                now = time.perf_counter()
                if now >= end:
                    break
                if now < warm_end:
                    lat.clear()
                    measured_from = now
        elapsed = time.perf_counter() - measured_from
    lat.sort()
    return {"p50_us": percentile(lat, 50) / 1e3, "p99_us": percentile(lat, 99) / 1e3,
            "rtt_per_s": len(lat) / elapsed, "count": len(lat)}


# -- hold -----------------------------------------------------------------------------------


async def hold(port: int, conns: int, concurrency: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(concurrency)
    held: list[socket.socket] = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        async with sem:
            s = socket.socket()
            s.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(s, (HOST, port)), timeout)
                await loop.sock_sendall(s, b"p")
                reply = await asyncio.wait_for(loop.sock_recv(s, 16), timeout)
                if reply != b"p":
                    raise ConnectionError("no echo")
            except (OSError, TimeoutError):
                failed += 1
                s.close()
                return
            held.append(s)

    t = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(conns)))
    print(json.dumps({"ready": len(held), "failed": failed,
                      "open_s": time.perf_counter() - t}), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the harness closes our stdin
    for s in held:
        with contextlib.suppress(OSError):
            s.close()


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.loadgen")
    ap.add_argument("mode", choices=["connrate", "pingpong", "rr", "hold"])
    ap.add_argument("port", type=int)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=0.3)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--size", type=int, default=1)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=20.0)
    a = ap.parse_args(argv)
    if a.mode == "pingpong":
        result = pingpong(a.port, a.duration, a.warmup, a.size)
    else:
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            if a.mode == "connrate":
                result = runner.run(connrate(a.port, a.duration, a.warmup, a.concurrency,
                                             a.size))
            elif a.mode == "rr":
                result = runner.run(rr(a.port, a.duration, a.warmup, a.conns, a.size))
            else:
                runner.run(hold(a.port, a.conns, a.concurrency, a.timeout))
                return 0
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
