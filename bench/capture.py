"""Live capture benchmark: ``wirekit capture`` against ``tcpdump -w`` on the same UDP flood.

A sender process pushes N small UDP datagrams to a loopback port as fast as it can (a sink
socket is bound there and never read, so no ICMP comes back); each capturer records the
flood with the same kernel filter (``udp port P``), in turn, several times.  The table
gives the medians of packets captured and of the kernel's drop count (what tcpdump prints
as "packets dropped by kernel"; wirekit reports the same PACKET_STATISTICS counter) and the
capturer's CPU time.  Target (issue 6): no more kernel drops than tcpdump.

    python -m bench.capture                       # 200,000 datagrams x 3 runs each
    python -m bench.capture --datagrams 50000 --runs 1
    python -m bench.capture --senders 2            # two senders: harder on 2 cores
    python -m bench.capture --tcpdump-buffer 4096   # tcpdump -B 4096 (KiB), like wirekit

Needs root (CAP_NET_RAW) and tcpdump (apt install tcpdump).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

__all__ = ["main", "run"]

SENDER = r"""
import socket, sys
port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.1", port))
payload = b"x" * size
send = s.send
for _ in range(n):
    send(payload)
"""


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _settle(path: Path, quiet_for: float = 0.5, limit: float = 30.0) -> None:
    """Wait until the file stops growing (the capturer has caught up)."""
    last, since, deadline = -1, time.monotonic(), time.monotonic() + limit
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else 0
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= quiet_for:
            return
        time.sleep(0.05)


def _finish(proc: subprocess.Popen[bytes]) -> tuple[str, str]:
    """SIGINT (Ctrl-C), then the capturer's (stdout, stderr)."""
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return out.decode(), err.decode()


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds so far of a running process (before it writes its end)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _one(tool: str, port: int, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    path = workdir / f"{tool}.{'pcapng' if tool == 'wirekit' else 'pcap'}"
    path.unlink(missing_ok=True)
    filt = f"udp port {port}"
    if tool == "wirekit":
        cmd = [sys.executable, "-m", "wirekit", "capture", "-i", "lo", "-f", filt, "-w",
               str(path), "-q", "--json"]
    else:
        cmd = [args.tcpdump, "-i", "lo", "-n", "-w", str(path)]
        if args.tcpdump_buffer:
            cmd += ["-B", str(args.tcpdump_buffer)]
        cmd += [filt]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        if tool == "wirekit":
            _wait(lambda: path.exists() and path.stat().st_size > 0, 15, "wirekit capture")
        else:
            # tcpdump writes "listening on lo ..." once its socket is bound and filtered.
            assert proc.stderr is not None
            line = proc.stderr.readline().decode()
            if "listening on" not in line:
                raise RuntimeError(f"tcpdump did not start: {line}")
        share = args.datagrams // args.senders
        t0 = time.perf_counter()
        senders = [subprocess.Popen([sys.executable, "-c", SENDER, str(port), str(share),
                                     str(args.size)], stdout=subprocess.DEVNULL)
                   for _ in range(args.senders)]
        for sender in senders:
            if sender.wait(300) != 0:
                raise RuntimeError("a sender failed")
        sent_pps = share * args.senders / (time.perf_counter() - t0)
        # tcpdump -w buffers its output and libpcap hands over a ring block after up to
        # 1 s: wait long enough for both to have written everything they will.
        _settle(path, quiet_for=1.5)
        cpu = _cpu_of(proc.pid)
        out, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if tool == "wirekit":
        report = json.loads(out)
        captured, dropped = report["packets"], report["kernel"]["dropped"]
        received = report["kernel"]["received"]
    else:
        def count(label: str) -> int:
            m = re.search(rf"(\d+) packets? {label}", err)
            if m is None:
                raise RuntimeError(f"tcpdump said: {err}")
            return int(m.group(1))
        captured, received, dropped = (count("captured"), count("received by filter"),
                                       count("dropped by kernel"))
    return {"captured": captured, "received": received, "dropped": dropped, "cpu": cpu,
            "sent_pps": sent_pps}


def run(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {"wirekit": [], "tcpdump": []}
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="wirekit-bench-capture-") as tmp:
        for i in range(args.runs):
            for tool in ("wirekit", "tcpdump"):
                r = _one(tool, port, args, Path(tmp))
                results[tool].append(r)
                print(f"run {i + 1} {tool}: captured {r['captured']}, dropped "
                      f"{r['dropped']}, cpu {r['cpu']:.2f}s, sender {r['sent_pps']:.0f} pps",
                      file=sys.stderr, flush=True)
    sink.close()
    _table(results, args)
    return results


def _table(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    buf = f"-B {args.tcpdump_buffer}" if args.tcpdump_buffer else "default buffer"
    print(f"\nUDP flood on lo: {args.datagrams} datagrams of {args.size} bytes from "
          f"{args.senders} sender process(es), filter "
          f"'udp port P', median of {args.runs} runs (tcpdump: {buf})\n")
    print("| capturer | sent (pps) | captured | received by filter | dropped by kernel "
          "| CPU (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    med = {}
    for tool, runs in results.items():
        m = {k: median(r[k] for r in runs) for k in runs[0]}
        med[tool] = m
        print(f"| {tool} | {m['sent_pps']:.0f} | {m['captured']:.0f} | {m['received']:.0f} "
              f"| {m['dropped']:.0f} | {m['cpu']:.2f} |")
    ok = med["wirekit"]["dropped"] <= med["tcpdump"]["dropped"]
    print(f"\ntarget: kernel drops <= tcpdump's: {'met' if ok else 'NOT met'} "
          f"({med['wirekit']['dropped']:.0f} vs {med['tcpdump']['dropped']:.0f})")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.capture", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datagrams", type=int, default=200_000)
    p.add_argument("--size", type=int, default=32, help="UDP payload bytes")
    p.add_argument("--senders", type=int, default=1,
                   help="sender processes in parallel (the datagrams are shared out)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--tcpdump-buffer", type=int, default=0, metavar="KIB",
                   help="tcpdump -B (KiB); default: tcpdump's own default")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.tcpdump = shutil.which("tcpdump")
    if args.tcpdump is None:
        print("bench.capture: tcpdump is not installed (apt install tcpdump)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("bench.capture: live capture needs root (CAP_NET_RAW)", file=sys.stderr)
        return 2
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
