"""Issue 5's benchmark: ``wirekit tunnel -L`` vs OpenSSH ``ssh -N -L`` vs the sshtunnel package.

``python -m bench.ssh [--duration 3] [--conns 5000] [--quick]``

Everything goes to one OpenSSH ``sshd`` started here on a loopback port (own config, host key
and authorized key in a temporary directory), forwarding to two targets started here too:
``iperf3 -s`` (throughput) and a small uvloop echo server (latency, conn/s, held connections).

Subjects (each one process forwarding two local ports):

- ``direct``: no tunnel (the floor for latency).
- ``ssh chacha20`` / ``ssh aes128-gcm``: ``ssh -N -L ... [-c aes128-gcm@openssh.com]``.
- ``wirekit``: ``wirekit tunnel -q -L ...`` (its default cipher preference: aes128-gcm first).
- ``wirekit chacha20``: the same with ``-c chacha20-poly1305@openssh.com``.
- ``sshtunnel``: ``SSHTunnelForwarder`` (paramiko) in a subprocess, if the package is
  installed (it is not a wirekit dependency: ``pip install sshtunnel``).

Columns: ``Gbit/s`` (iperf3 -t D, received), ``+p50``/``+p99`` (1-byte ping-pong round trip
minus direct, µs), ``1KiB p99`` (1 KiB ping-pong p99 in ms: ~41 ms is Nagle + delayed ACK),
``conn/s`` (16 asyncio workers: connect, 1-byte echo, close), ``KiB/conn`` (growth of the
forwarding process's PSS while holding ``--conns`` open, echo-checked connections).
Nothing is killed by name; every process is started in its own session and stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
ECHO_SERVER = r"""
import asyncio, sys, socket
class Echo(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t
        t.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def data_received(self, d):
        self.t.write(d)
async def main():
    srv = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0, backlog=4096)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
try:
    import uvloop; uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""
SSHTUNNEL_CLIENT = r"""
import logging, signal, sys, sshtunnel
port, user, key, *targets = sys.argv[1:]
t = sshtunnel.SSHTunnelForwarder(
    ("127.0.0.1", int(port)), ssh_username=user, ssh_pkey=key, allow_agent=False,
    host_pkey_directories=[], ssh_config_file=None,
    remote_bind_addresses=[("127.0.0.1", int(p)) for p in targets],
    local_bind_addresses=[("127.0.0.1", 0) for _ in targets], logger=logging.getLogger("x"))
t.start()
print(*t.local_bind_ports, flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
t.stop()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode} before listening")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on {HOST}:{port}")
        time.sleep(0.02)


@dataclass
class Procs:
    """Processes started here, each in its own session; stopped by PID (group)."""

    items: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, start_new_session=True, **kw)  # type: ignore[call-overload]
        self.items.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(3)

    def stop_all(self) -> None:
        for proc in reversed(self.items):
            self.stop(proc)


def pss_kib(pid: int) -> int:
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            total += int(line.split()[1])
    return total


# -- measurements ------------------------------------------------------------------------------
def iperf(port: int, duration: float, attempts: int = 3) -> float:
    """iperf3 client through ``port``; retried (the server can still be busy with the
    readiness probe's aborted session)."""
    error = ""
    for _ in range(attempts):
        out = subprocess.run(["iperf3", "-c", HOST, "-p", str(port), "-t", f"{duration:g}",
                              "-J"], capture_output=True, text=True, timeout=duration + 30)
        data = json.loads(out.stdout)
        if "error" not in data:
            return float(data["end"]["sum_received"]["bits_per_second"]) / 1e9
        error = data["error"]
        time.sleep(0.5)
    raise RuntimeError(f"iperf3 through port {port}: {error}")


def pingpong(port: int, size: int, count: int) -> list[float]:
    payload = b"x" * size
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for i in range(count + 50):
            t0 = time.perf_counter()
            s.sendall(payload)
            got = 0
            while got < size:
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("echo closed")
                got += len(chunk)
            if i >= 50:
                times.append(time.perf_counter() - t0)
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def conn_rate(port: int, duration: float, workers: int = 16) -> float:
    done = 0
    deadline = time.monotonic() + duration

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            r, w = await asyncio.open_connection(HOST, port)
            w.write(b"x")
            await r.readexactly(1)
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return done / (time.monotonic() - start)


async def hold(port: int, pid: int, n: int) -> float:
    before = pss_kib(pid)
    conns = []
    try:
        for i in range(0, n, 100):
            batch = await asyncio.gather(*(asyncio.open_connection(HOST, port)
                                           for _ in range(min(100, n - i))))
            for _, w in batch:
                w.write(b"x")
            for r, _ in batch:
                await asyncio.wait_for(r.readexactly(1), 30)
            conns.extend(batch)
        await asyncio.sleep(1.0)
        after = pss_kib(pid)
    finally:
        for _, w in conns:
            w.close()
    return (after - before) / n


# -- subjects ------------------------------------------------------------------------------------
@dataclass
class Lab:
    dir: Path
    procs: Procs
    sshd_port: int = 0
    echo_port: int = 0
    iperf_port: int = 0
    key: Path = Path()
    user: str = field(default_factory=getpass.getuser)


def start_lab(procs: Procs) -> Lab:
    lab = Lab(Path(tempfile.mkdtemp(prefix="wirekit-bench-ssh-")), procs)
    for name in ("host", "id"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(lab.dir / name)], check=True)
    lab.key = lab.dir / "id"
    (lab.dir / "authorized_keys").write_bytes((lab.dir / "id.pub").read_bytes())
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    lab.sshd_port = free_port()
    (lab.dir / "sshd_config").write_text(
        f"Port {lab.sshd_port}\nListenAddress {HOST}\nHostKey {lab.dir / 'host'}\n"
        f"AuthorizedKeysFile {lab.dir / 'authorized_keys'}\nPidFile none\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin yes\nPasswordAuthentication no\nMaxStartups 200\n"
        "LogLevel ERROR\n")
    sshd = procs.start([shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f",
                        str(lab.dir / "sshd_config")], stderr=subprocess.DEVNULL)
    wait_port(lab.sshd_port, sshd)
    echo = procs.start([sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE)
    assert echo.stdout is not None
    lab.echo_port = int(echo.stdout.readline())
    lab.iperf_port = free_port()
    return lab


def start_subject(lab: Lab, name: str) -> tuple[subprocess.Popen[bytes] | None, int, int]:
    """Start the forwarder; returns (process, local echo port, local iperf port)."""
    if name == "direct":
        return None, lab.echo_port, lab.iperf_port
    if name == "sshtunnel":
        proc = lab.procs.start([sys.executable, "-c", SSHTUNNEL_CLIENT, str(lab.sshd_port),
                                lab.user, str(lab.key), str(lab.echo_port), str(lab.iperf_port)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        e, i = (int(p) for p in proc.stdout.readline().split())
        return proc, e, i
    e, i = free_port(), free_port()
    forwards = ["-L", f"{e}:{HOST}:{lab.echo_port}", "-L", f"{i}:{HOST}:{lab.iperf_port}"]
    if name.startswith("ssh"):
        cipher = ["-c", "aes128-gcm@openssh.com"] if "gcm" in name else []
        argv = ["ssh", "-N", "-F", "/dev/null", "-o", "BatchMode=yes", "-o",
                "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o",
                "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR", "-i", str(lab.key), "-p",
                str(lab.sshd_port), *cipher, *forwards, f"{lab.user}@{HOST}"]
    else:
        cipher = ["-c", "chacha20-poly1305@openssh.com"] if "chacha" in name else []
        argv = [sys.executable, "-m", "wirekit", "tunnel", f"{lab.user}@{HOST}:{lab.sshd_port}",
                "-q", "--no-agent", "-i", str(lab.key), "--known-hosts",
                str(lab.dir / "known_hosts"), "--accept-new", *cipher, *forwards]
    proc = lab.procs.start(argv, stdin=subprocess.DEVNULL)
    wait_port(e, proc)
    wait_port(i, proc)
    return proc, e, i


SUBJECTS = ["direct", "ssh chacha20", "ssh aes128-gcm", "wirekit", "wirekit chacha20",
            "sshtunnel"]


def measure(lab: Lab, name: str, args: argparse.Namespace) -> dict[str, float]:
    proc, echo_port, iperf_port = start_subject(lab, name)
    row: dict[str, float] = {}
    try:
        server = lab.procs.start(["iperf3", "-s", "-p", str(lab.iperf_port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(lab.iperf_port, server)
        try:
            row["Gbit/s"] = iperf(iperf_port, args.duration)
        finally:
            lab.procs.stop(server)
        small = pingpong(echo_port, 1, args.pings)
        row["p50"] = pct(small, 0.5) * 1e6
        row["p99"] = pct(small, 0.99) * 1e6
        row["1KiB p99"] = pct(pingpong(echo_port, 1024, args.pings), 0.99) * 1e3
        row["conn/s"] = asyncio.run(conn_rate(echo_port, args.duration))
        if proc is not None and args.conns:
            try:
                row["KiB/conn"] = asyncio.run(hold(echo_port, proc.pid, args.conns))
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                print(f"  {name}: holding {args.conns} connections failed: {exc!r}",
                      file=sys.stderr)
                row["KiB/conn"] = float("nan")
    finally:
        if proc is not None:
            lab.procs.stop(proc)
    return row


def table(rows: dict[str, dict[str, float]]) -> str:
    direct = rows.get("direct", {})
    cols = ["Gbit/s", "+p50 µs", "+p99 µs", "1KiB p99 ms", "conn/s", "KiB/conn"]
    lines = ["| subject | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in rows.items():
        values = [
            f"{row['Gbit/s']:.2f}",
            f"{row['p50'] - direct.get('p50', 0):.0f}" if name != "direct" else
            f"({row['p50']:.0f})",
            f"{row['p99'] - direct.get('p99', 0):.0f}" if name != "direct" else
            f"({row['p99']:.0f})",
            f"{row['1KiB p99']:.2f}",
            f"{row['conn/s']:.0f}",
            f"{row['KiB/conn']:.1f}" if "KiB/conn" in row else "-",
        ]
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def ratios(rows: dict[str, dict[str, float]]) -> Iterator[str]:
    def r(a: str, b: str, col: str) -> str:
        if a not in rows or b not in rows:
            return "n/a"
        return f"{rows[a][col] / rows[b][col]:.2f}x"

    yield f"throughput: wirekit / sshtunnel = {r('wirekit', 'sshtunnel', 'Gbit/s')} (target 1.5x)"
    yield (f"throughput: wirekit / ssh aes128-gcm = {r('wirekit', 'ssh aes128-gcm', 'Gbit/s')}, "
           f"wirekit chacha20 / ssh chacha20 = {r('wirekit chacha20', 'ssh chacha20', 'Gbit/s')}"
           " (target 0.6x, same cipher)")
    yield (f"conn/s: wirekit / sshtunnel = {r('wirekit', 'sshtunnel', 'conn/s')} (target 10x), "
           f"wirekit / ssh aes128-gcm = {r('wirekit', 'ssh aes128-gcm', 'conn/s')} (target 0.4x)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ssh", description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--pings", type=int, default=2000)
    ap.add_argument("--conns", type=int, default=5000, help="held connections (0: skip)")
    ap.add_argument("--only", default="", help="comma-separated subjects")
    ap.add_argument("--quick", action="store_true", help="1 s, 500 pings, 500 connections")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.pings, args.conns = 1.0, 500, 500
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for tool in ("sshd", "ssh", "iperf3", "ssh-keygen"):
        if not (shutil.which(tool) or os.access(f"/usr/sbin/{tool}", os.X_OK)):
            print(f"bench.ssh needs {tool}", file=sys.stderr)
            return 1
    subjects = [s.strip() for s in args.only.split(",") if s.strip()] or SUBJECTS
    try:
        import sshtunnel  # noqa: F401
    except ImportError:
        subjects = [s for s in subjects if s != "sshtunnel"]
        print("sshtunnel is not installed: skipped (pip install sshtunnel)", file=sys.stderr)
    procs = Procs()
    rows: dict[str, dict[str, float]] = {}
    try:
        lab = start_lab(procs)
        for name in subjects:
            print(f"== {name}", file=sys.stderr, flush=True)
            rows[name] = measure(lab, name, args)
            print(f"   {rows[name]}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        return 130
    finally:
        procs.stop_all()
    load = os.getloadavg()[0]
    print(f"# python -m bench.ssh {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"# {os.cpu_count()} CPUs, load average {load:.2f} at the end, "
          f"{args.duration:g} s per measurement, {args.conns} held connections\n")
    print(table(rows))
    print()
    for line in ratios(rows):
        print(f"- {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
