"""A benchmark suite: subjects (servers/relays) x measurements, repeated, medians kept.

Theory of operation: every subject is started once and kept running; each run then takes
every measurement of every subject in turn (measurement by measurement, so the subjects
compared in a ratio are measured close together in time), so that slow drifts of a shared
machine (other jobs, thermal) spread over all subjects instead of hitting one. The result
is the median of the runs per (subject, metric). A measurement that fails records NaN and a
note; the suite goes on.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bench.harness import BenchError, Proc, echo_probe
from bench.table import median

__all__ = ["Measurement", "Options", "Started", "Subject", "SuiteResult", "run_suite"]


@dataclass(frozen=True, slots=True)
class Options:
    runs: int = 3
    duration: float = 3.0
    quick: bool = False
    pairs: int = 5000
    haproxy_threads: int = 1
    only: tuple[str, ...] = ()


@dataclass
class Started:
    """A running subject: the port to use per kind of target ("echo", "iperf"), and the
    processes we started for it (empty for "direct", which is the target itself)."""

    ports: dict[str, int]
    procs: dict[str, Proc] = field(default_factory=dict)

    def alive(self) -> bool:
        return all(p.alive() for p in self.procs.values())

    def stop(self) -> None:
        for p in self.procs.values():
            p.stop()


@dataclass(frozen=True, slots=True)
class Subject:
    name: str
    start: Callable[[], Started]
    note: str = ""


Measure = Callable[[Started], Mapping[str, float]]


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    measure: Measure
    applies: Callable[[str], bool] = lambda subject: True
    repeat: bool = True  # False: measured in the first run only (slow, e.g. memory)


@dataclass
class SuiteResult:
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def medians(self) -> dict[str, dict[str, float]]:
        return {s: {k: median(v) for k, v in metrics.items()}
                for s, metrics in self.samples.items()}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_suite(subjects: list[Subject], measurements: list[Measurement],
              opts: Options) -> SuiteResult:
    """Run every measurement on every subject ``opts.runs`` times."""
    result = SuiteResult()
    t_start = time.monotonic()
    running: dict[str, Started] = {}
    try:
        for subj in subjects:
            result.samples[subj.name] = {}
            try:
                started = subj.start()
            except (BenchError, OSError) as exc:
                result.notes.append(f"{subj.name}: not measured: {exc}")
                _log(f"  {subj.name}: could not start: {exc}")
                continue
            try:
                if "echo" in started.ports:
                    echo_probe(started.ports["echo"])
                running[subj.name] = started
            except BenchError as exc:
                started.stop()
                result.notes.append(f"{subj.name}: not measured: {exc}")
                _log(f"  {subj.name}: could not start: {exc}")
                continue
            if subj.note:
                result.notes.append(f"{subj.name}: {subj.note}")
        dead: set[str] = set()
        for run in range(opts.runs):
            for m in measurements:
                for name, started in running.items():
                    if name in dead or not m.applies(name) or (run and not m.repeat):
                        continue
                    if not started.alive():
                        result.notes.append(f"{name}: a process exited during the run")
                        dead.add(name)
                        continue
                    _log(f"  run {run + 1}/{opts.runs}: {name}: {m.name} ...")
                    try:
                        values = m.measure(started)
                    except (BenchError, OSError, ValueError, KeyError,
                            subprocess.SubprocessError) as exc:
                        result.notes.append(f"{name}: {m.name} failed in run {run + 1}: {exc}")
                        _log(f"    failed: {exc}")
                        values = {}
                    for key, value in values.items():
                        result.samples[name].setdefault(key, []).append(value)
                    shown = ", ".join(f"{k}={v:,.4g}" for k, v in values.items()
                                      if not math.isnan(v))
                    _log(f"    {shown}")
    finally:
        for started in running.values():
            started.stop()
        result.elapsed = time.monotonic() - t_start
    return result
