"""``python -m bench [echo|forward|all] [--runs 3] [--quick] [--json FILE]``.

``python -m bench NAME ARGS`` runs another benchmark module, ``python -m bench.NAME ARGS``.

Prints one markdown table per suite (medians of the runs, with ratios) and, where the issue
sets targets, whether each is met. Progress goes to stderr, the tables to stdout.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from types import ModuleType

from bench import echo, forward
from bench.harness import cleanup
from bench.suite import Options, run_suite
from bench.table import check_targets, format_table

SUITES: dict[str, ModuleType] = {"echo": echo, "forward": forward}
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _parse(argv: list[str] | None) -> tuple[list[str], Options, Path | None]:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description="wirekit and peer tools side by side on loopback; medians and ratios.",
    )
    ap.add_argument("suite", nargs="?", default="all", choices=[*SUITES, "all"])
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement (median taken)")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    ap.add_argument("--quick", action="store_true",
                    help="1 run of 1 s each and 1,000 idle pairs: a smoke test, not a result")
    ap.add_argument("--pairs", type=int, default=5000, help="idle connection pairs (memory)")
    ap.add_argument("--haproxy-threads", type=int, default=1,
                    help="haproxy nbthread (default 1, like one wirekit process)")
    ap.add_argument("--only", default="",
                    help="comma-separated subject names to run (e.g. 'direct,wirekit')")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="first wait up to S seconds for the 1-minute load average to drop "
                         "below 1.0 (the machine is shared)")
    ap.add_argument("--json", metavar="FILE", type=Path,
                    help="also write the raw samples and medians as JSON "
                         "(a bare file name goes to bench/results/)")
    a = ap.parse_args(argv)
    runs, duration, pairs = a.runs, a.duration, a.pairs
    if a.quick:
        runs, duration, pairs = 1, 1.0, min(pairs, 1000)
    opts = Options(runs=max(1, runs), duration=duration, quick=a.quick, pairs=pairs,
                   haproxy_threads=a.haproxy_threads,
                   only=tuple(s.strip() for s in a.only.split(",") if s.strip()))
    json_path = a.json
    if json_path is not None and json_path.parent == Path("."):
        json_path = RESULTS_DIR / json_path
    names = list(SUITES) if a.suite == "all" else [a.suite]
    if a.wait_quiet > 0:
        _wait_quiet(a.wait_quiet)
    return names, opts, json_path


def _wait_quiet(limit: float) -> None:
    deadline = time.monotonic() + limit
    while os.getloadavg()[0] >= 1.0 and time.monotonic() < deadline:
        print(f"waiting for a quieter machine: load average {os.getloadavg()[0]:.2f}",
              file=sys.stderr, flush=True)
        time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))


def _finite(obj: object) -> object:
    """``obj`` with NaN replaced by None, so the JSON is standard."""
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _machine() -> str:
    load = os.getloadavg()
    return (f"{platform.node() or 'host'}: {os.cpu_count()} CPUs, Linux {platform.release()}, "
            f"Python {platform.python_version()}, load average {load[0]:.2f} at start")


def _delegate(argv: list[str]) -> int | None:
    """``python -m bench NAME ARGS`` for another benchmark module ``bench/NAME.py`` that has
    its own ``main(argv)`` (e.g. ``inspect``, ``ssh``): run it as ``python -m bench.NAME``."""
    if not argv or argv[0].startswith("-") or argv[0] in (*SUITES, "all"):
        return None
    name = argv[0]
    if not name.isidentifier() or importlib.util.find_spec(f"bench.{name}") is None:
        return None
    module = importlib.import_module(f"bench.{name}")
    if not callable(getattr(module, "main", None)):
        return None
    return int(module.main(argv[1:]) or 0)


def main(argv: list[str] | None = None) -> int:
    delegated = _delegate(sys.argv[1:] if argv is None else list(argv))
    if delegated is not None:
        return delegated
    names, opts, json_path = _parse(argv)
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"# {command}\n# {_machine()}\n# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, "
          f"medians of {opts.runs} run(s) of {opts.duration:g} s\n", flush=True)
    report: dict[str, object] = {"command": command, "machine": _machine(),
                                 "options": opts.__repr__(), "suites": {}}
    try:
        for name in names:
            suite = SUITES[name]
            print(f"== {name} ==", file=sys.stderr, flush=True)
            subjects = [s for s in suite.subjects(opts) if not opts.only or s.name in opts.only]
            result = run_suite(subjects, suite.measurements(opts), opts)
            rows = result.medians()
            suite.derive(rows)
            print(f"## {name}: {suite.TITLE}\n")
            print(format_table(rows, suite.COLUMNS, ratios_to=suite.RATIOS_TO,
                               ratio_columns=suite.RATIO_COLUMNS))
            print()
            for line in suite.LEGEND:
                print(f"- {line}")
            for note in result.notes:
                print(f"- note: {note}")
            verdicts = check_targets(rows, suite.TARGETS)
            if verdicts:
                print("\nTargets:")
                for v in verdicts:
                    print(f"  {v.describe()}")
            load = os.getloadavg()[0]
            print(f"\n({name}: {result.elapsed:.0f} s; load average {load:.2f} at the end"
                  f"{'; a busy machine: treat these numbers as rough' if load > 1.5 else ''})\n",
                  flush=True)
            report["suites"][name] = {  # type: ignore[index]
                "samples": result.samples, "medians": rows, "notes": result.notes,
                "targets": [{"label": v.target.label, "ratio": v.ratio, "met": v.met}
                            for v in verdicts],
            }
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        cleanup()
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(_finite(report), indent=2, default=str) + "\n")
        print(f"wrote {json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
