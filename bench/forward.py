"""Issue 3's benchmark: ``wirekit forward`` against direct loopback, socat and haproxy.

Two targets are started once and shared: ``python -m bench.echod`` (a bare uvloop echo
server) and ``iperf3 -s``. Every relay runs twice, one instance in front of each target
(haproxy: one process with two frontends).

Subjects:

- ``direct``: no relay, the client talks to the target itself (the ceiling).
- ``wirekit``: ``wirekit forward 127.0.0.1:P 127.0.0.1:T -q --max-conns 20000`` (uvloop,
  its default); ``python -m bench.wkforward`` (the library API) until the CLI exists.
- ``wirekit asyncio``: ``python -m bench.wkforward P T --loop asyncio``: the same relay on
  the stdlib event loop.
- ``socat``: ``socat TCP-LISTEN:P,bind=127.0.0.1,fork,reuseaddr TCP:127.0.0.1:T``.
- ``haproxy``: ``haproxy -db -f CFG``, ``mode tcp``, ``nbthread`` 1 by default
  (``--haproxy-threads``), ``maxconn`` 20000 or what RLIMIT_NOFILE allows.

Measurements:

- ``Gbit/s ×1``, ``×4``: ``iperf3 -c 127.0.0.1 -p P -t D -P 1|4``, received bits/s.
- ``+p50``/``+p99``: 1-byte ping-pong round trip through the relay minus the direct one
  (medians of the runs; one connection, blocking client).
- ``conn/s``: 16 workers: connect, 1-byte echo, close (through the relay to bench.echod).
- ``KiB/pair``: growth of the relay's memory while it holds ``--pairs`` idle pairs (each
  pair checked with a 1-byte echo first), divided by the pairs: PSS summed over the relay
  process and its children (socat forks one per connection; PSS splits shared pages so
  they are not counted once per child). Measured once, first, on a fresh relay.
"""

from __future__ import annotations

import importlib.util
import json
import math
import resource
import select
import subprocess
import sys
import time
from collections.abc import Mapping

from bench.echo import wirekit_argv
from bench.harness import BenchError, Proc, free_port, loadgen, tool, tree_memory, workdir
from bench.suite import Measurement, Options, Started, Subject
from bench.table import Column, Target

__all__ = ["COLUMNS", "RATIOS_TO", "TARGETS", "derive", "measurements", "subjects"]

TITLE = "TCP relay, direct vs wirekit forward vs socat vs haproxy"
MAX_CONNS = 20000


class _Targets:
    """The echo and iperf3 servers behind every relay, started on first use."""

    echo: Proc | None = None
    iperf: Proc | None = None

    def ports(self) -> dict[str, int]:
        if self.echo is None or not self.echo.alive():
            port = free_port()
            self.echo = Proc("target echod", [sys.executable, "-m", "bench.echod", str(port)],
                             port).start()
        if self.iperf is None or not self.iperf.alive():
            path = tool("iperf3")
            if path is None:
                raise BenchError("iperf3 is not installed")
            port = free_port()
            self.iperf = Proc("target iperf3", [path, "-s", "-B", "127.0.0.1", "-p",
                                                str(port)], port).start()
        return {"echo": self.echo.port, "iperf": self.iperf.port}


TARGET_SERVERS = _Targets()


def _pair(name: str, argv_of: object) -> Started:
    """Start one relay per target; ``argv_of(listen_port, target_port)`` is its argv."""
    targets = TARGET_SERVERS.ports()
    started = Started({})
    try:
        for kind, target_port in targets.items():
            port = free_port()
            proc = Proc(f"{name} -> {kind}", argv_of(port, target_port), port)  # type: ignore[operator]
            started.procs[kind] = proc.start()
            started.ports[kind] = port
    except BaseException:
        started.stop()
        raise
    return started


def _direct() -> Started:
    return Started(TARGET_SERVERS.ports())


def _cli_flags(command: str) -> list[str] | None:
    """Flags for ``wirekit forward`` if its CLI exists, else None."""
    if importlib.util.find_spec(f"wirekit.cli.{command}") is None:
        return None
    help_text = subprocess.run(wirekit_argv(command, "--help"), capture_output=True,
                               text=True, timeout=30, check=False).stdout
    flags = ["-q"] if " -q" in help_text else []
    if "--max-conns" in help_text:
        flags += ["--max-conns", str(MAX_CONNS)]
    return flags


def _wirekit(loop: str) -> Started:
    if importlib.util.find_spec("wirekit.net.forward") is None:
        raise OSError("wirekit.net.forward is not implemented yet")
    flags = _cli_flags("forward") if loop == "uvloop" else None
    if flags is None:
        return _pair(f"wirekit {loop}", lambda p, t: [
            sys.executable, "-m", "bench.wkforward", str(p), str(t), "--loop", loop,
            "--max-conns", str(MAX_CONNS)])
    return _pair("wirekit", lambda p, t: wirekit_argv(
        "forward", f"127.0.0.1:{p}", f"127.0.0.1:{t}", *flags))


def _socat() -> Started:
    path = tool("socat")
    if path is None:
        raise OSError("socat is not installed")
    return _pair("socat", lambda p, t: [
        path, f"TCP-LISTEN:{p},bind=127.0.0.1,fork,reuseaddr", f"TCP:127.0.0.1:{t}"])


HAPROXY_CFG = """\
global
    maxconn {maxconn}
    nbthread {threads}
defaults
    mode tcp
    maxconn {maxconn}
    timeout connect 10s
    timeout client 300s
    timeout server 300s
frontend echo
    bind 127.0.0.1:{echo_port}
    default_backend echo
backend echo
    server echo 127.0.0.1:{echo_target}
frontend iperf
    bind 127.0.0.1:{iperf_port}
    default_backend iperf
backend iperf
    server iperf 127.0.0.1:{iperf_target}
"""


def _haproxy(threads: int) -> Started:
    path = tool("haproxy")
    if path is None:
        raise OSError("haproxy is not installed")
    targets = TARGET_SERVERS.ports()
    ports = {"echo": free_port(), "iperf": free_port()}
    # haproxy wants 2 descriptors per connection and may not raise the hard limit itself
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    maxconn = MAX_CONNS if hard == resource.RLIM_INFINITY else min(MAX_CONNS, (hard - 200) // 2)
    cfg = workdir() / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(
        maxconn=maxconn, threads=threads, echo_port=ports["echo"],
        echo_target=targets["echo"], iperf_port=ports["iperf"], iperf_target=targets["iperf"]))
    proc = Proc("haproxy", [path, "-db", "-f", str(cfg)], ports["echo"]).start()
    return Started(ports, {"echo": proc})


def subjects(opts: Options) -> list[Subject]:
    return [
        Subject("direct", _direct),
        Subject("wirekit", lambda: _wirekit("uvloop")),
        Subject("wirekit asyncio", lambda: _wirekit("asyncio"),
                "the library API on the stdlib loop (python -m bench.wkforward --loop asyncio)"),
        Subject("socat", _socat),
        Subject("haproxy", lambda: _haproxy(opts.haproxy_threads),
                f"haproxy 'mode tcp', nbthread {opts.haproxy_threads}"),
    ]


# -- measurements ---------------------------------------------------------------------------


def iperf(port: int, streams: int, duration: float) -> float:
    """iperf3's received Gbit/s through ``port`` (3 tries: a busy server is retried)."""
    path = tool("iperf3")
    if path is None:
        raise BenchError("iperf3 is not installed")
    argv = [path, "-c", "127.0.0.1", "-p", str(port), "-t", f"{duration:g}", "-P", str(streams),
            "-J"]
    last = ""
    for _attempt in range(3):  # "the server is busy" right after the previous test: retry
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 15,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"iperf3 did not finish within {duration + 15:g} s") from exc
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            last = done.stdout[-300:] + done.stderr[-300:]
        else:
            if "error" not in report:
                return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9
            last = report["error"]
        time.sleep(0.5)
    raise BenchError(f"iperf3 failed: {last}")


def _memory(s: Started, pairs: int) -> dict[str, float]:
    proc = s.procs.get("echo")
    if proc is None:
        return {}
    pid = proc.pid
    rss0, pss0, _ = tree_memory(pid)
    hold = subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen", "hold", str(s.ports["echo"]),
         "--conns", str(pairs), "--concurrency", "50"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert hold.stdout is not None
        limit = 30 + pairs / 100
        ready, _, _ = select.select([hold.stdout], [], [], limit)
        if not ready:
            raise BenchError(f"{pairs} idle pairs not open after {limit:g} s")
        line = hold.stdout.readline()
        status = json.loads(line or b"{}")
        n = int(status.get("ready", 0))
        if n == 0:
            raise BenchError(f"no idle pair could be opened: {status}")
        time.sleep(0.5)  # let a forking relay's children settle (not synchronisation)
        rss1, pss1, count = tree_memory(pid)
    finally:
        if hold.stdin is not None:
            hold.stdin.close()
        try:
            hold.wait(60)
        except subprocess.TimeoutExpired:
            hold.kill()
            hold.wait(5)
    return {"kib_per_pair": (pss1 - pss0) / 1024 / n, "rss_kib_per_pair": (rss1 - rss0) / 1024 / n,
            "pairs_open": n, "pairs_failed": float(status.get("failed", 0)),
            "relay_procs": float(count)}


def latency_and_rate(d: float) -> list[Measurement]:
    """1-byte ping-pong latency and the connection rate through the subject's ``echo`` port,
    ``d`` seconds each (loadgen)."""
    def ping(s: Started) -> dict[str, float]:
        r = loadgen("pingpong", s.ports["echo"], "--duration", f"{d:g}")
        return {"p50_us": r["p50_us"], "p99_us": r["p99_us"]}

    def conn(s: Started) -> dict[str, float]:
        r = loadgen("connrate", s.ports["echo"], "--duration", f"{d:g}", "--concurrency", "16")
        return {"conn_per_s": r["conn_per_s"], "conn_errors": r["errors"]}

    return [Measurement("1-byte ping-pong", ping), Measurement("connection rate", conn)]


def measurements(opts: Options) -> list[Measurement]:
    d = opts.duration

    def thr(streams: int) -> Measurement:
        return Measurement(f"iperf3 -P {streams}",
                           lambda s: {f"thr{streams}_gbps": iperf(s.ports["iperf"], streams, d)})

    return [
        Measurement(f"memory at {opts.pairs} idle pairs", lambda s: _memory(s, opts.pairs),
                    applies=lambda name: name != "direct", repeat=False),
        thr(1), thr(4),
        *latency_and_rate(d),
    ]


def derive(rows: Mapping[str, dict[str, float]]) -> None:
    """Added latency = the subject's round trip minus the direct one."""
    direct = rows.get("direct", {})
    for name, row in rows.items():
        for q in ("p50", "p99"):
            base = direct.get(f"{q}_us", math.nan)
            value = row.get(f"{q}_us", math.nan)
            row[f"added_{q}_us"] = math.nan if name == "direct" else value - base


def _us(v: float) -> str:
    return f"{v:.1f}"


COLUMNS = [
    Column("thr1_gbps", "Gbit/s ×1", lambda v: f"{v:.1f}"),
    Column("thr4_gbps", "Gbit/s ×4", lambda v: f"{v:.1f}"),
    Column("p50_us", "rtt p50 µs", _us),
    Column("added_p50_us", "+p50 µs", _us),
    Column("p99_us", "rtt p99 µs", _us),
    Column("added_p99_us", "+p99 µs", _us),
    Column("conn_per_s", "conn/s"),
    Column("kib_per_pair", "KiB/pair", lambda v: f"{v:.1f}"),
]
RATIO_COLUMNS = ("thr1_gbps", "thr4_gbps", "conn_per_s")
RATIOS_TO = ("haproxy", "socat")
LEGEND = [
    "Gbit/s ×1/×4: iperf3 through the relay, 1 and 4 parallel streams",
    "rtt: 1-byte ping-pong round trip on one connection; +p50/+p99: minus direct's",
    "conn/s: connect, 1-byte echo, close; 16 concurrent clients",
    "KiB/pair: relay memory growth (PSS over its process tree) per idle connection pair",
    "÷ X: ratio to subject X in the same run",
]
TARGETS = [
    Target("throughput ×1", "wirekit", "thr1_gbps", "haproxy", 1.0),
    Target("throughput ×1", "wirekit", "thr1_gbps", "socat", 1.5),
    Target("throughput ×4", "wirekit", "thr4_gbps", "haproxy", 1.0),
    Target("throughput ×4", "wirekit", "thr4_gbps", "socat", 1.5),
    Target("added latency p50", "wirekit", "added_p50_us", "haproxy", 1.0,
           higher_is_better=False),
    Target("added latency p99", "wirekit", "added_p99_us", "socat", 1.0,
           higher_is_better=False),
    Target("connections/s", "wirekit", "conn_per_s", "haproxy", 0.9),
    Target("connections/s", "wirekit", "conn_per_s", "socat", 2.0),
    Target("memory KiB per idle pair", "wirekit", "kib_per_pair", "", 4.0,
           higher_is_better=False),
]
