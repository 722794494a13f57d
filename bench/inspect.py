"""Offline dissection benchmark: ``wirekit inspect --json`` against tshark, dpkt and scapy.

All four compute the same conversation summary (TCP conversations: endpoints, packets and
bytes each way) of the same synthesized loopback capture: many TCP connections, each with a
three-way handshake, an HTTP request and response, and a FIN close, interleaved 16 at a
time.  By default every conversation's heads differ (URI, Host, User-Agent, Date, ETag,
Content-Length), so that no cache of parsed heads makes the figures better than on real
traffic; ``--heads identical`` gives the older capture where every head is the same.
Each tool runs in its own process (interpreter start-up included); the table gives packets
per second and wirekit's speed ratio against each.

    python -m bench.inspect                  # 1,000,000 packets
    python -m bench.inspect --packets 200000 --skip scapy

dpkt and scapy are bench-only: ``pip install dpkt scapy`` into the venv (a missing one is
reported as skipped).  The capture is cached in the work directory between runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main", "run", "synthesize"]

REQUEST = b"GET /index.html HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: bench\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 1800\r\n\r\n" + b"x" * 1800
PER_CONV = 14  # handshake 3 + request/ack 2 + response 2 segments + 2 acks... see _conv()


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _heads(i: int, varied: bool) -> tuple[bytes, bytes]:
    """The request and response of conversation ``i``."""
    if not varied:
        return REQUEST, RESPONSE
    length = 1500 + (i * 37) % 1000  # the response still takes two segments
    request = (f"GET /item/{i}?page={i % 97} HTTP/1.1\r\nHost: h{i % 9973}.bench.local\r\n"
               f"User-Agent: bench/{i % 13}.{i % 7}\r\nAccept: */*\r\n\r\n").encode()
    response = (f"HTTP/1.1 200 OK\r\nDate: {_DAYS[i % 7]}, {1 + i % 28:02d} Nov 2026 "
                f"{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d} GMT\r\n"
                f"ETag: \"{i:x}\"\r\nContent-Type: text/html\r\n"
                f"Content-Length: {length}\r\n\r\n").encode() + b"x" * length
    return request, response


def _conv(i: int, varied: bool = True) -> list[bytes]:
    from wirekit.pcapng.synth import TcpFlow

    client = (f"127.{1 + i // 60000 % 250}.{i // 240 % 250}.{1 + i % 240}", 1024 + i % 60000)
    flow = TcpFlow(client, ("127.0.0.1", 8080), client_isn=(i * 7919) & 0xFFFFFFFF,
                   server_isn=(i * 104729) & 0xFFFFFFFF)
    request, response = _heads(i, varied)
    return (flow.handshake() + flow.send("c", request) + flow.send("s", response)
            + flow.close())


def synthesize(path: Path, packets: int, varied: bool = True) -> int:
    """Write a capture of about ``packets`` packets; returns the exact count."""
    from wirekit.pcapng.writer import PcapngWriter

    count = 0
    ts = 1_700_000_000_000_000_000
    with open(path, "wb") as f:
        w = PcapngWriter(f, flush=False)
        iface = w.add_interface(name="lo")
        conv = 0
        while count < packets:
            group = [_conv(conv + k, varied) for k in range(16)]
            conv += 16
            for step in range(max(map(len, group))):
                for frames in group:
                    if step < len(frames) and count < packets:
                        ts += 7_000
                        w.write_packet(iface, frames[step], ts)
                        count += 1
        w.flush()
    return count


_DPKT = r'''
import sys, dpkt
conv = {}
with open(sys.argv[1], "rb") as f:
    for ts, buf in dpkt.pcapng.Reader(f):
        eth = dpkt.ethernet.Ethernet(buf)
        ip = eth.data
        if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
            continue
        tcp = ip.data
        a, b = (ip.src, tcp.sport), (ip.dst, tcp.dport)
        key = (a, b) if a < b else (b, a)
        c = conv.get(key)
        if c is None or (tcp.flags & 0x12 == 0x02 and c[4]):
            c = conv[key] = [0, 0, 0, 0, False]
        d = 0 if a < b else 1
        c[d] += 1
        c[2 + d] += len(buf)
        if tcp.flags & 0x05:
            c[4] = True
print(len(conv))
'''

_SCAPY = r'''
import sys
from scapy.all import PcapNgReader, IP, TCP
conv = {}
for pkt in PcapNgReader(sys.argv[1]):
    if IP not in pkt or TCP not in pkt:
        continue
    ip, tcp = pkt[IP], pkt[TCP]
    a, b = (ip.src, tcp.sport), (ip.dst, tcp.dport)
    key = (a, b) if a < b else (b, a)
    c = conv.get(key)
    flags = int(tcp.flags)
    if c is None or (flags & 0x12 == 0x02 and c[4]):
        c = conv[key] = [0, 0, 0, 0, False]
    d = 0 if a < b else 1
    c[d] += 1
    c[2 + d] += len(pkt)
    if flags & 0x05:
        c[4] = True
print(len(conv))
'''


def _timed(cmd: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.decode(errors='replace')[-300:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def _has_module(name: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True,
                          check=False).returncode == 0


def run(args: argparse.Namespace | None = None) -> dict[str, dict[str, float]]:
    """Run the comparison; returns ``{tool: {"seconds", "pps"}}`` and prints a table."""
    if args is None:
        args = _parser().parse_args([])
    workdir = Path(args.workdir or tempfile.gettempdir())
    varied = args.heads == "varied"
    suffix = "-varied" if varied else ""
    capture = workdir / f"wirekit-bench-inspect-{args.packets}{suffix}.pcapng"
    if not capture.exists():
        t0 = time.perf_counter()
        n = synthesize(capture.with_suffix(".tmp"), args.packets, varied)
        capture.with_suffix(".tmp").rename(capture)
        print(f"synthesized {n} packets ({capture.stat().st_size >> 20} MiB) in "
              f"{time.perf_counter() - t0:.1f}s: {capture}", file=sys.stderr)
    skip = set(args.skip or [])
    tools: dict[str, list[str]] = {
        "wirekit": [sys.executable, "-m", "wirekit", "inspect", "-q", "--json", str(capture)],
        # The same conversation summary the others compute, without the HTTP analysis.
        "wirekit-no-app": [sys.executable, "-m", "wirekit", "inspect", "-q", "--json",
                           "--no-app", str(capture)],
    }
    tshark = shutil.which("tshark")
    if tshark:
        tools["tshark"] = [tshark, "-r", str(capture), "-q", "-z", "conv,tcp"]
    if _has_module("dpkt"):
        tools["dpkt"] = [sys.executable, "-c", _DPKT, str(capture)]
    if _has_module("scapy"):
        tools["scapy"] = [sys.executable, "-c", _SCAPY, str(capture)]
    results: dict[str, dict[str, float]] = {}
    for name, cmd in tools.items():
        if name in skip:
            continue
        runs = [_timed(cmd) for _ in range(args.repeat if name != "scapy" else 1)]
        wall = min(r[0] for r in runs)
        cpu = min(r[1] for r in runs)
        results[name] = {"seconds": wall, "cpu_seconds": cpu, "pps": args.packets / wall}
        print(f"  {name}: {wall:.2f}s wall, {cpu:.2f}s CPU", file=sys.stderr)
    _table(results, args.packets)
    return results


def _table(results: dict[str, dict[str, float]], packets: int) -> None:
    """One row per tool; the last columns are how many times faster wirekit is (wall / CPU),
    for the full inspection and for ``--no-app`` (the same summary the others compute)."""
    refs = [(k, results[k]) for k in ("wirekit", "wirekit-no-app") if k in results]
    print(f"\nconversation summary of {packets} packets (best of runs; lower is better)")
    head = f"{'tool':<15} {'wall s':>8} {'CPU s':>8} {'packets/s':>12}"
    for name, _ in refs:
        head += f" {name + ' x wall/CPU':>28}"
    print(head)
    targets = {"tshark": 2.0, "dpkt": 1.0, "scapy": 10.0}
    for name, r in results.items():
        row = f"{name:<15} {r['seconds']:>8.2f} {r['cpu_seconds']:>8.2f} {r['pps']:>12,.0f}"
        for _, ref in refs:
            cell = "" if name.startswith("wirekit") else (
                f"{r['seconds'] / ref['seconds']:.2f}x / "
                f"{r['cpu_seconds'] / ref['cpu_seconds']:.2f}x")
            row += f" {cell:>28}"
        if name in targets:
            row += f"   (target >= {targets[name]:g}x)"
        print(row)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.inspect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--packets", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--skip", action="append",
                   choices=["tshark", "dpkt", "scapy", "wirekit", "wirekit-no-app"])
    p.add_argument("--heads", choices=["varied", "identical"], default="varied",
                   help="HTTP heads differ per conversation (default) or are all the same")
    p.add_argument("--workdir", default=os.environ.get("WIREKIT_BENCH_DIR"))
    return p


def main(argv: list[str] | None = None) -> int:
    run(_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
