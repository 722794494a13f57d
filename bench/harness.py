"""Processes for the benchmarks: start servers and relays, wait for their ports, stop them.

Every process is started in its own session (process group = its PID) so that stopping it
also reaches the children it forked (socat ``fork``, ncat ``--exec``), and nothing else.
Nothing here is killed by name. Logs go to files in a temporary directory, never to a pipe
nobody reads (a server logging one line per connection would block on a full pipe).
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

__all__ = [
    "BenchError",
    "Proc",
    "echo_probe",
    "free_port",
    "loadgen",
    "tool",
    "tree_memory",
    "wait_port",
    "workdir",
]

LISTENING = re.compile(r"listening on (\w+)://(\[[^\]]+\]|[^:\s]+):(\d+)")
HOST = "127.0.0.1"


class BenchError(Exception):
    """A benchmark step could not run (missing tool, server did not start, ...)."""


def tool(name: str) -> str | None:
    """Path of an installed peer tool, or None."""
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    """An ephemeral loopback port that is free right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None,
              ) -> None:
    """Wait until something accepts TCP connections on ``HOST:port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{proc.args!r} exited with {proc.returncode} before listening")
        if time.monotonic() > deadline:
            raise BenchError(f"nothing listens on {HOST}:{port} after {timeout}s")
        time.sleep(0.02)


def echo_probe(port: int, timeout: float = 5.0) -> None:
    """One byte through ``HOST:port`` must come back: the subject works at all."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(b"?")
            if s.recv(16) != b"?":
                raise BenchError(f"{HOST}:{port} did not echo a probe byte")
    except OSError as exc:
        raise BenchError(f"{HOST}:{port} did not echo a probe byte within {timeout}s: "
                         f"{exc!r}") from exc


_workdir: Path | None = None


def workdir() -> Path:
    """A temporary directory for logs and configs, removed at exit by :func:`cleanup`."""
    global _workdir
    if _workdir is None:
        _workdir = Path(tempfile.mkdtemp(prefix="wirekit-bench-"))
    return _workdir


def cleanup() -> None:
    global _workdir
    for proc in list(Proc.running):
        proc.stop()
    if _workdir is not None:
        shutil.rmtree(_workdir, ignore_errors=True)
        _workdir = None


@dataclass(eq=False)
class Proc:
    """A server or relay under test, started by us and stopped by PID (process group)."""

    name: str
    argv: Sequence[str]
    port: int  # 0: parse the port from the ``listening on`` line
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)
    log: Path | None = field(default=None, init=False)

    running: ClassVar[set[Proc]] = set()

    def start(self, timeout: float = 15.0) -> Proc:
        slug = re.sub(r"[^\w]+", "-", self.name)
        self.log = workdir() / f"{slug}-{time.monotonic_ns()}.log"
        with open(self.log, "wb") as log:
            self.popen = subprocess.Popen(
                list(self.argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env={**os.environ, **(self.env or {})}, start_new_session=True,
            )
        Proc.running.add(self)
        try:
            if self.port == 0:
                self.port = self._listening_port(timeout)
            wait_port(self.port, timeout, self.popen)
        except BenchError as exc:
            self.stop()
            tail = self.log_text(400).strip().replace("\n", " / ")
            raise BenchError(f"{exc}; its output: {tail}" if tail else str(exc)) from None
        except BaseException:
            self.stop()
            raise
        return self

    def _listening_port(self, timeout: float) -> int:
        assert self.popen is not None and self.log is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = LISTENING.search(self.log.read_text(errors="replace"))
            if m:
                return int(m.group(3))
            if self.popen.poll() is not None:
                break
            time.sleep(0.02)
        raise BenchError(f"{self.name}: no 'listening on' line; log:\n{self.log_text()}")

    def log_text(self, limit: int = 2000) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-limit:]

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to our process group, then SIGKILL if it does not exit."""
        Proc.running.discard(self)
        if self.popen is None:
            return
        pgid = self.popen.pid  # start_new_session: the group is ours alone
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
            try:
                self.popen.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            # children (socat/ncat forks) may outlive the parent briefly: SIGKILL the group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            break


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    with contextlib.suppress(OSError):
        for task in task_dir.iterdir():
            with contextlib.suppress(OSError):
                kids += [int(x) for x in (task / "children").read_text().split()]
    return kids


def _tree(pid: int) -> Iterator[int]:
    stack = [pid]
    while stack:
        p = stack.pop()
        yield p
        stack += _children(p)


def tree_memory(pid: int) -> tuple[int, int, int]:
    """(RSS of ``pid``, PSS summed over ``pid`` and its descendants, process count), bytes.

    PSS splits shared pages between the processes sharing them, so a forking server's
    copy-on-write children are not counted many times over.
    """
    rss = pss = count = 0
    for p in _tree(pid):
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        count += 1
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key == "Pss":
                pss += int(rest.split()[0]) * 1024
            elif key == "Rss" and p == pid:
                rss = int(rest.split()[0]) * 1024
    return rss, pss, count


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and of its reaped children, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def loadgen(mode: str, port: int, *args: str, timeout: float = 120.0) -> dict[str, float]:
    """Run ``python -m bench.loadgen MODE PORT ARGS`` in its own process; its JSON result."""
    argv = [sys.executable, "-m", "bench.loadgen", mode, str(port), *args]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False,
                              cwd=Path(__file__).resolve().parent.parent)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"load generator {mode} timed out after {timeout}s") from exc
    if done.returncode != 0:
        raise BenchError(f"load generator {mode} failed ({done.returncode}): "
                         f"{done.stderr.decode(errors='replace')[-800:]}")
    result: dict[str, float] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result
