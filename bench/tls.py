"""Issue 4's serve benchmark: TLS handshakes per second and memory per idle TLS connection.

``python -m bench.tls [--runs 3] [--duration 3] [--conns 2000] [--quick]``
(also ``python -m bench tls ...``)

Subjects, each a TLS echo server on loopback with the same certificate (EC P-256, made
here by wirekit's CA code, in the bench's temporary directory):

- ``openssl s_server``: ``openssl s_server -www -quiet`` (one connection at a time: it has
  no concurrency, so it is measured for handshakes only).
- ``wirekit``: ``wirekit serve echo tls://127.0.0.1:0 --cert C --key K -q`` (uvloop).
- ``wirekit asyncio``: the same ``wirekit.serve`` on the stdlib's event loop instead of
  uvloop (to show the cost of asyncio's own TLS transport, see DESIGN.md).

Columns:

- ``hs/s``: full TLS 1.3 handshakes per second driven by ``openssl s_time -new -time D``
  (the same C client for every subject: connect, handshake, close_notify, close; one at a
  time), counted over wall-clock time.  Subjects are measured in turn within each run.
- ``server CPU µs/hs``: the server process's CPU time (user + system) during those
  handshakes, per handshake: what a busy, shared machine disturbs least.
- ``KiB/conn`` / ``RSS KiB/conn``: growth of the server's PSS / RSS while ``--conns`` TLS
  connections are held open and idle (each completed its handshake and echoed one byte),
  divided by ``--conns``.

Targets (issue 4): handshakes/s >= 0.8x openssl s_server; <= 64 KiB per idle TLS connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shlex
import ssl
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import (
    BenchError,
    Proc,
    cleanup,
    cpu_seconds,
    free_port,
    tool,
    tree_memory,
    workdir,
)
from bench.table import Column, Target, check_targets, format_table, median

S_SERVER, WIREKIT, WIREKIT_ASYNCIO = "openssl s_server", "wirekit", "wirekit asyncio"
SUBJECTS = (S_SERVER, WIREKIT, WIREKIT_ASYNCIO)
COLUMNS = [Column("hs", "hs/s"), Column("cpu", "server CPU µs/hs"),
           Column("kib", "KiB/conn", lambda v: f"{v:,.1f}"),
           Column("rss", "RSS KiB/conn", lambda v: f"{v:,.1f}")]
TARGETS = [
    Target("handshakes/s", WIREKIT, "hs", S_SERVER, 0.8),
    Target("memory per idle TLS connection (KiB)", WIREKIT, "kib", "", 64.0,
           higher_is_better=False),
]
ASYNCIO_SERVER = r"""
import asyncio, resource, sys, wirekit
from wirekit.net.gate import Limits
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
async def main():
    server = await wirekit.serve("echo", "tls://127.0.0.1:0", cert=sys.argv[1], key=sys.argv[2],
                                 limits=Limits(max_conns=100000))
    print("listening on", server.address, file=sys.stderr, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""
STIME = re.compile(rb"(\d+) connections in [\d.]+s;")


def _certificate() -> tuple[Path, Path, Path]:
    from wirekit.tls.certs import LocalCA

    d = workdir() / "pki"
    ca = LocalCA.init(d / "ca", common_name="bench CA")
    issued = ca.issue(["localhost", "127.0.0.1"], d / "server")
    return ca.cert_path, issued.cert_path, issued.key_path


def _start(name: str, cert: Path, key: Path) -> Proc:
    if name == S_SERVER:
        openssl = tool("openssl")
        if openssl is None:
            raise BenchError("openssl is not installed")
        port = free_port()
        argv = [openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert),
                "-key", str(key), "-www", "-quiet"]
        return Proc(name, argv, port).start()
    if name == WIREKIT:
        argv = [sys.executable, "-m", "wirekit", "serve", "echo", "tls://127.0.0.1:0",
                "--cert", str(cert), "--key", str(key), "-q", "--max-conns", "100000"]
        return Proc(name, argv, 0).start()
    return Proc(name, [sys.executable, "-c", ASYNCIO_SERVER, str(cert), str(key)], 0).start()


def handshakes(proc: Proc, duration: float) -> tuple[float, float]:
    """(handshakes per wall-clock second, server CPU µs per handshake), by ``openssl s_time
    -new`` (one handshake at a time)."""
    openssl = tool("openssl")
    if openssl is None:
        raise BenchError("openssl is not installed")
    port = proc.port
    cpu = cpu_seconds(proc.pid)
    start = time.monotonic()
    done = subprocess.run([openssl, "s_time", "-connect", f"127.0.0.1:{port}", "-new",
                           "-time", f"{max(1, round(duration))}"],
                          capture_output=True, timeout=duration + 60, check=False)
    elapsed = time.monotonic() - start
    m = STIME.search(done.stdout)
    if m is None:
        raise BenchError(f"s_time printed no count: {done.stdout[-300:]!r} {done.stderr[-300:]!r}")
    count = int(m.group(1))
    return count / elapsed, (cpu_seconds(proc.pid) - cpu) / count * 1e6


# -- holding idle TLS connections (runs in its own process: python -m bench.tls --hold) ----


async def _hold(port: int, count: int, ca: str) -> None:
    ctx = ssl.create_default_context(cafile=ca)
    conns = []
    sem = asyncio.Semaphore(64)

    async def one() -> None:
        async with sem:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                           server_hostname="localhost")
            writer.write(b"?")
            if await asyncio.wait_for(reader.readexactly(1), 30) != b"?":
                raise RuntimeError("no echo")
            conns.append(writer)

    await asyncio.gather(*(one() for _ in range(count)))
    print(json.dumps({"ready": len(conns)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for w in conns:
        w.close()


def idle_memory(proc: Proc, count: int, ca: Path) -> tuple[float, float]:
    """KiB of server (PSS, RSS) per idle TLS connection, ``count`` held by a client."""
    rss_before, before, _ = tree_memory(proc.pid)
    holder = subprocess.Popen([sys.executable, "-m", "bench.tls", "--hold", str(proc.port),
                               str(count), str(ca)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              cwd=Path(__file__).resolve().parent.parent)
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        if not line:
            raise BenchError(f"the TLS holder failed: {holder.stderr.read()[-500:]!r}")  # type: ignore[union-attr]
        time.sleep(1.0)  # let the server finish post-handshake work (tickets, buffers)
        rss_after, after, _ = tree_memory(proc.pid)
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        try:
            holder.wait(30)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait(5)
    return (after - before) / count / 1024, (rss_after - rss_before) / count / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.tls", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds of s_time per run")
    ap.add_argument("--conns", type=int, default=2000, help="idle TLS connections (0: skip)")
    ap.add_argument("--only", default="", help="comma-separated subjects")
    ap.add_argument("--quick", action="store_true", help="1 run of 1 s, 500 connections")
    ap.add_argument("--hold", nargs=3, metavar=("PORT", "COUNT", "CA"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.hold:
        import uvloop

        uvloop.run(_hold(int(args.hold[0]), int(args.hold[1]), args.hold[2]))
        return 0
    if args.quick:
        args.runs, args.duration, args.conns = 1, 1.0, 500
    names = [s.strip() for s in args.only.split(",") if s.strip()] or list(SUBJECTS)
    command = "python -m bench.tls " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"# {command}\n# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at "
          f"start; medians of {args.runs} run(s)\n")
    samples: dict[str, dict[str, list[float]]] = {n: {"hs": [], "cpu": [], "kib": [], "rss": []}
                                                   for n in names}
    try:
        ca, cert, key = _certificate()
        procs = {name: _start(name, cert, key) for name in names}
        for run in range(args.runs):
            for name in names:  # subject after subject within each run
                rate, cpu = handshakes(procs[name], args.duration)
                samples[name]["hs"].append(rate)
                samples[name]["cpu"].append(cpu)
                print(f"run {run + 1}: {name}: {rate:,.0f} handshakes/s, {cpu:,.0f} µs of "
                      "server CPU each", file=sys.stderr, flush=True)
        if args.conns:
            for name in names:
                if name == S_SERVER:
                    continue  # one connection at a time: it cannot hold idle connections
                fresh = _start(name, cert, key)  # a server that has not seen s_time's churn
                try:
                    kib, rss = idle_memory(fresh, args.conns, ca)
                except BenchError as exc:
                    print(f"{name}: memory not measured: {exc}", file=sys.stderr, flush=True)
                    continue
                finally:
                    fresh.stop()
                samples[name]["kib"].append(kib)
                samples[name]["rss"].append(rss)
                print(f"{name}: {kib:,.1f} KiB per idle TLS connection ({args.conns})",
                      file=sys.stderr, flush=True)
    except BenchError as exc:
        print(f"bench.tls: {exc}", file=sys.stderr)
        return 1
    finally:
        cleanup()
    rows = {n: {k: median(v) for k, v in cols.items()} for n, cols in samples.items()}
    print(format_table(rows, COLUMNS, ratios_to=(S_SERVER,), ratio_columns=("hs", "cpu")))
    print(f"\n- hs/s: openssl s_time -new -time {max(1, round(args.duration))}, full TLS 1.3 "
          "handshakes one at a time, per wall-clock second; server CPU µs/hs: the server "
          "process's user+system CPU during them, per handshake")
    print(f"- KiB/conn: server PSS growth with {args.conns} idle TLS connections held "
          "(each handshaken and echo-checked), per connection")
    print("\nTargets:")
    for verdict in check_targets(rows, TARGETS):
        print(f"  {verdict.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
