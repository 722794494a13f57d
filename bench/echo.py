"""Issue 2's benchmark: ``wirekit serve echo`` against socat, ncat and the direct ceiling.

Subjects (each a TCP echo server on 127.0.0.1, started and stopped by us):

- ``direct``: ``python -m bench.echod``, the least an event-loop echo server can do (a bare
  uvloop Protocol that writes back what it reads: no limits, logging or ACL). It is the
  ceiling a Python server can reach with this client on this machine.
- ``wirekit``: ``wirekit serve echo tcp://127.0.0.1:PORT -q`` (uvloop, the default).
- ``socat PIPE``: ``socat TCP-LISTEN:PORT,fork,reuseaddr PIPE`` (socat's own echo: one
  forked socat per connection looping the bytes through a pipe).
- ``socat EXEC:cat``: ``socat TCP-LISTEN:PORT,fork,reuseaddr EXEC:cat`` (fork + exec cat).
- ``ncat --exec``: ``ncat -l -k -m 1000 --exec /bin/cat 127.0.0.1 PORT`` (fork + exec cat
  per connection; ``-m 1000`` lifts ncat's default limit of 100 connections to wirekit's).

Measurements (bench/loadgen.py, each in its own client process, fixed duration):

- ``conn/s``: 16 concurrent workers, each: connect, send 1 byte, read it back, close.
- ``p50``/``p99``/``rtt/s``: one connection, 1-byte ping-pong, blocking client.
- ``rr/s ×32``: 32 connections, 1-byte ping-pong on each, replies trigger the next request.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from bench.harness import Proc, free_port, loadgen, tool
from bench.suite import Measurement, Options, Started, Subject
from bench.table import Column, Target

__all__ = ["COLUMNS", "RATIOS_TO", "TARGETS", "derive", "measurements", "subjects"]

TITLE = "TCP echo servers, connection rate and round trips"


def _proc(name: str, argv: list[str], port: int) -> Started:
    return Started({"echo": port}, {"echo": Proc(name, argv, port).start()})


def _peer(name: str, tool_name: str, argv_of: object) -> Subject:
    def start() -> Started:
        path = tool(tool_name)
        if path is None:
            raise OSError(f"{tool_name} is not installed")
        port = free_port()
        return _proc(name, argv_of(path, port), port)  # type: ignore[operator]

    return Subject(name, start)


def wirekit_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "wirekit", *args]


def wirekit_quiet_flag(command: str) -> list[str]:
    """``-q`` when ``wirekit COMMAND`` has it: no per-connection log line, like the peers."""
    help_text = subprocess.run(wirekit_argv(command, "--help"), capture_output=True,
                               text=True, timeout=30, check=False).stdout
    return ["-q"] if " -q" in help_text else []


def _wirekit_serve() -> Started:
    if importlib.util.find_spec("wirekit.cli.serve") is None:
        raise OSError("wirekit serve is not implemented yet (no wirekit/cli/serve.py)")
    port = free_port()
    argv = wirekit_argv("serve", "echo", f"tcp://127.0.0.1:{port}",
                        *wirekit_quiet_flag("serve"))
    return _proc("wirekit", argv, port)


def _direct() -> Started:
    port = free_port()
    return _proc("direct", [sys.executable, "-m", "bench.echod", str(port)], port)


def subjects(opts: Options) -> list[Subject]:
    direct = Subject("direct", _direct)
    listen = "TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"
    return [
        direct,
        Subject("wirekit", _wirekit_serve),
        _peer("socat PIPE", "socat",
              lambda path, port: [path, listen.format(port=port), "PIPE"]),
        _peer("socat EXEC:cat", "socat",
              lambda path, port: [path, listen.format(port=port), "EXEC:cat"]),
        _peer("ncat --exec", "ncat",
              lambda path, port: [path, "-l", "-k", "-m", "1000", "--exec", "/bin/cat",
                                  "127.0.0.1", str(port)]),
    ]


def measurements(opts: Options) -> list[Measurement]:
    d = f"{opts.duration:g}"

    def conn(s: Started) -> dict[str, float]:
        r = loadgen("connrate", s.ports["echo"], "--duration", d, "--concurrency", "16")
        return {"conn_per_s": r["conn_per_s"], "conn_errors": r["errors"]}

    def ping(s: Started) -> dict[str, float]:
        r = loadgen("pingpong", s.ports["echo"], "--duration", d)
        return {"p50_us": r["p50_us"], "p99_us": r["p99_us"], "rtt_per_s": r["rtt_per_s"]}

    def rr32(s: Started) -> dict[str, float]:
        r = loadgen("rr", s.ports["echo"], "--duration", d, "--conns", "32")
        return {"rr32_per_s": r["rr_per_s"]}

    return [Measurement("connection rate", conn), Measurement("1-byte ping-pong", ping),
            Measurement("32-connection ping-pong", rr32)]


COLUMNS = [
    Column("conn_per_s", "conn/s"),
    Column("p50_us", "p50 µs", lambda v: f"{v:.1f}"),
    Column("p99_us", "p99 µs", lambda v: f"{v:.1f}"),
    Column("rtt_per_s", "rtt/s (1 conn)"),
    Column("rr32_per_s", "rtt/s (32 conns)"),
]
RATIO_COLUMNS = ("conn_per_s", "rtt_per_s", "rr32_per_s")
RATIOS_TO = ("socat PIPE",)
TARGETS: list[Target] = []  # issue 2 sets none; the table's ratios are the result
LEGEND = [
    "direct: a bare uvloop Protocol echo (python -m bench.echod), the ceiling for a "
    "Python server with this client",
    "conn/s: connect, send 1 byte, read it back, close; 16 concurrent clients",
    "p50/p99, rtt/s (1 conn): 1-byte ping-pong on one connection, blocking client",
    "rtt/s (32 conns): 1-byte ping-pong on 32 connections at once (uvloop client)",
    "÷ X: ratio to subject X in the same run",
]


def derive(rows: dict[str, dict[str, float]]) -> None:
    """Nothing derived for echo."""
