"""Recording overhead: ``wirekit forward --record`` bulk throughput against plain ``forward``.

One ``iperf3 -s`` target; three subjects, measured in turn, ``--runs`` times each (medians):

- ``direct``: iperf3 straight to the target (the ceiling);
- ``forward``: ``wirekit forward -q 127.0.0.1:P 127.0.0.1:T``;
- ``forward --record``: the same with ``--record FILE.pcapng`` (both legs written, on the
  same disk as the bench's temporary directory, ``--dir`` to choose another).

Columns: received Gbit/s of ``iperf3 -c -t D -P 1``, the ratio to ``forward``, and for the
recording the packets written, packets dropped (the writer could not keep up; the relay
never waits for the disk or the writer process, which runs at nice 10), the share of
packets recorded and the file size.  Target (issue 6): ``forward --record`` >= 0.5x
``forward``.

    python -m bench record                    # 3 runs of 3 s
    python -m bench record --runs 1 --duration 2
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from statistics import median

from bench.echo import wirekit_argv
from bench.forward import iperf
from bench.harness import Proc, cleanup, free_port, tool, workdir

__all__ = ["main"]


def _one(name: str, target: int, duration: float, record: Path | None) -> dict[str, float]:
    if name == "direct":
        return {"gbps": iperf(target, 1, duration)}
    port = free_port()
    argv = wirekit_argv("forward", "-q", f"127.0.0.1:{port}", f"127.0.0.1:{target}")
    if record is not None:
        argv = wirekit_argv("forward", f"127.0.0.1:{port}", f"127.0.0.1:{target}",
                            "--record", str(record))
    proc = Proc(name, argv, port).start()
    try:
        gbps = iperf(port, 1, duration)
    finally:
        proc.stop(timeout=60)
    row: dict[str, float] = {"gbps": gbps}
    if record is not None:
        log = proc.log_text(20000)
        m = re.search(r"recorded (\d+) packets", log)
        d = re.search(r"(\d+) packets were not recorded", log)
        row["packets"] = float(m[1]) if m else float("nan")
        row["dropped"] = float(d[1]) if d else 0.0
        row["mib"] = record.stat().st_size / 2**20 if record.exists() else float("nan")
        record.unlink(missing_ok=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench record", description=__doc__.split(
        "\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--dir", type=Path, default=None,
                    help="where the recording is written (default: a temporary directory)")
    a = ap.parse_args(argv)
    path = tool("iperf3")
    if path is None:
        print("iperf3 is not installed", file=sys.stderr)
        return 1
    where = a.dir or workdir()
    try:
        tport = free_port()
        Proc("iperf3 -s", [path, "-s", "-B", "127.0.0.1", "-p", str(tport)], tport).start()
        subjects = ("direct", "forward", "forward --record")
        samples: dict[str, list[dict[str, float]]] = {s: [] for s in subjects}
        for run in range(a.runs):
            for s in subjects:
                print(f"run {run + 1}/{a.runs}: {s}", file=sys.stderr, flush=True)
                rec = where / "bench-record.pcapng" if s.endswith("--record") else None
                samples[s].append(_one(s, tport, a.duration, rec))
        rows = {s: {k: median(r[k] for r in rs) for k in rs[0]} for s, rs in samples.items()}
        base = rows["forward"]["gbps"]
        print(f"# python -m bench record {' '.join(argv if argv is not None else sys.argv[1:])}"
              f"\n# medians of {a.runs} run(s) of {a.duration:g} s, iperf3 -P 1\n")
        print("| subject | Gbit/s | x forward | packets written | packets dropped | recorded "
              "| file MiB |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for s, r in rows.items():
            total = r.get("packets", 0) + r.get("dropped", 0)
            extra = (f"{r['packets']:.0f} | {r['dropped']:.0f} | "
                     f"{100 * r['packets'] / total if total else 0:.0f}% | {r['mib']:.0f}"
                     if "packets" in r else "- | - | - | -")
            print(f"| {s} | {r['gbps']:.2f} | {r['gbps'] / base:.2f} | {extra} |")
        ratio = rows["forward --record"]["gbps"] / base
        print(f"\nTarget: forward --record >= 0.5x forward: {ratio:.2f}x "
              f"{'met' if ratio >= 0.5 else 'NOT met'}")
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
