"""Issue 4's forward benchmark: a TLS tunnel through ``wirekit forward`` against stunnel.

``python -m bench forward_tls [--runs 3] [--duration 3] [--pairs 2000] [--quick]``

The path, for each subject, in front of each target (``bench.echod`` and ``iperf3 -s``)::

    plaintext client -> [originate: P -> tls://Q] -> [terminate: tls://Q -> T] -> target

Subjects (each is two processes, each process serving both targets):

- ``direct``: the client talks to the target itself (the baseline for added latency).
- ``wirekit``: ``wirekit forward -f 127.0.0.1:P1=tls://127.0.0.1:Q1 -f ... --ca CA --sni
  localhost`` and ``wirekit forward -f tls://127.0.0.1:Q1=127.0.0.1:T1 -f ... --cert C
  --key K`` (uvloop; certificate verified; TLS 1.3).
- ``stunnel``: the same with two stunnel processes (``client = yes`` with ``verifyChain``
  and ``checkHost`` on the originating one), ``foreground = yes``, configs in a temp dir.

Measurements: iperf3 throughput (1 stream), 1-byte ping-pong p50/p99 (added: minus
direct's), new connections per second (each one is a full TLS handshake between the two
relays; 16 concurrent clients: connect, 1-byte echo, close), and memory per idle pair:
growth of RSS (and PSS) of both relay processes while ``--pairs`` idle connections are
held through the chain, divided by pairs and by 2 (per relay: one TLS and one plaintext
socket each).
"""

from __future__ import annotations

import argparse
import math
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from bench import forward as plain
from bench.harness import BenchError, Proc, _tree, cleanup, free_port, tool, workdir
from bench.suite import Measurement, Options, Started, Subject, run_suite
from bench.table import Column, Target, check_targets, format_table

TITLE = "TLS tunnel (originate + terminate), wirekit forward vs stunnel"
MAX_CONNS = "20000"


def _pki() -> tuple[Path, Path, Path]:
    from wirekit.tls.certs import LocalCA

    d = workdir() / "pki-forward-tls"
    if (d / "server.pem").exists():
        return d / "ca" / "ca.pem", d / "server.pem", d / "server-key.pem"
    ca = LocalCA.init(d / "ca", common_name="bench CA")
    issued = ca.issue(["localhost", "127.0.0.1"], d / "server")
    return ca.cert_path, issued.cert_path, issued.key_path


def _wirekit(workers: int = 1) -> Started:
    ca, cert, key = _pki()
    targets = plain.TARGET_SERVERS.ports()
    tls_ports = {kind: free_port() for kind in targets}
    ports = {kind: free_port() for kind in targets}
    wk = [sys.executable, "-m", "wirekit", "forward", "-q", "--max-conns", MAX_CONNS,
          "--workers", str(workers)]
    term_rules = [a for kind, t in targets.items()
                  for a in ("-f", f"tls://127.0.0.1:{tls_ports[kind]}=127.0.0.1:{t}")]
    orig_rules = [a for kind in targets
                  for a in ("-f", f"127.0.0.1:{ports[kind]}=tls://127.0.0.1:{tls_ports[kind]}")]
    started = Started(ports)
    try:
        started.procs["terminate"] = Proc(
            "wirekit terminate", [*wk, *term_rules, "--cert", str(cert), "--key", str(key)],
            tls_ports["echo"]).start()
        started.procs["echo"] = Proc(
            "wirekit originate", [*wk, *orig_rules, "--ca", str(ca), "--sni", "localhost"],
            ports["echo"]).start()
    except BaseException:
        started.stop()
        raise
    return started


STUNNEL_GLOBAL = "foreground = yes\npid =\ndebug = 3\nsyslog = no\noutput = {log}\n"
STUNNEL_SERVER = "[{name}]\naccept = 127.0.0.1:{accept}\nconnect = 127.0.0.1:{connect}\n" \
                 "cert = {cert}\nkey = {key}\n"
STUNNEL_CLIENT = "[{name}]\nclient = yes\naccept = 127.0.0.1:{accept}\n" \
                 "connect = 127.0.0.1:{connect}\nCAfile = {ca}\nverifyChain = yes\n" \
                 "checkHost = localhost\nsni = localhost\n"


def _stunnel() -> Started:
    path = tool("stunnel") or tool("stunnel4")
    if path is None:
        raise OSError("stunnel is not installed")
    ca, cert, key = _pki()
    targets = plain.TARGET_SERVERS.ports()
    tls_ports = {kind: free_port() for kind in targets}
    ports = {kind: free_port() for kind in targets}
    d = workdir()
    server_cfg = STUNNEL_GLOBAL.format(log=d / "stunnel-server.log") + "".join(
        STUNNEL_SERVER.format(name=k, accept=tls_ports[k], connect=t, cert=cert, key=key)
        for k, t in targets.items())
    client_cfg = STUNNEL_GLOBAL.format(log=d / "stunnel-client.log") + "".join(
        STUNNEL_CLIENT.format(name=k, accept=ports[k], connect=tls_ports[k], ca=ca)
        for k in targets)
    (d / "stunnel-server.conf").write_text(server_cfg)
    (d / "stunnel-client.conf").write_text(client_cfg)
    started = Started(ports)
    try:
        started.procs["terminate"] = Proc("stunnel terminate",
                                          [path, str(d / "stunnel-server.conf")],
                                          tls_ports["echo"]).start()
        started.procs["echo"] = Proc("stunnel originate", [path, str(d / "stunnel-client.conf")],
                                     ports["echo"]).start()
    except BaseException:
        started.stop()
        raise
    return started


def subjects(opts: Options) -> list[Subject]:
    return [
        Subject("direct", lambda: Started(plain.TARGET_SERVERS.ports())),
        Subject("wirekit", _wirekit, "two wirekit forward processes (uvloop), TLS 1.3"),
        Subject("wirekit ×2", lambda: _wirekit(2),
                "the same with --workers 2 each (stunnel uses a thread per connection)"),
        Subject("stunnel", _stunnel, "two stunnel processes, TLS 1.3, verifyChain+checkHost"),
    ]


def _rss_pss(pid: int) -> tuple[int, int]:
    """RSS and PSS summed over ``pid`` and its children (--workers)."""
    rss = pss = 0
    for p in _tree(pid):
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                value = int(rest.split()[0]) * 1024
                rss, pss = (rss + value, pss) if key == "Rss" else (rss, pss + value)
    return rss, pss


def _memory(s: Started, pairs: int) -> dict[str, float]:
    relays = [p.pid for p in s.procs.values()]
    if not relays:
        return {}
    before = [_rss_pss(pid) for pid in relays]
    hold = subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen", "hold", str(s.ports["echo"]),
         "--conns", str(pairs), "--concurrency", "50"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        import json
        import select

        assert hold.stdout is not None
        limit = 60 + pairs / 50
        if not select.select([hold.stdout], [], [], limit)[0]:
            raise BenchError(f"{pairs} idle pairs not open after {limit:g} s")
        status = json.loads(hold.stdout.readline() or b"{}")
        n = int(status.get("ready", 0))
        if n == 0:
            raise BenchError(f"no idle pair could be opened: {status}")
        time.sleep(1.0)  # handshakes finished; let the relays settle (not synchronisation)
        after = [_rss_pss(pid) for pid in relays]
    finally:
        if hold.stdin is not None:
            hold.stdin.close()
        try:
            hold.wait(120)
        except subprocess.TimeoutExpired:
            hold.kill()
            hold.wait(5)
    rss = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    pss = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
    per = {name: (after[i][0] - before[i][0]) / 1024 / n
           for i, name in enumerate(s.procs)}
    return {"kib_per_pair": rss / 1024 / n / 2, "pss_kib_per_pair": pss / 1024 / n / 2,
            "kib_originate": per.get("echo", math.nan),
            "kib_terminate": per.get("terminate", math.nan), "pairs_open": n}


def measurements(opts: Options) -> list[Measurement]:
    d = opts.duration

    def thr(s: Started) -> dict[str, float]:
        return {"thr1_gbps": plain.iperf(s.ports["iperf"], 1, d)}

    return [
        Measurement(f"memory at {opts.pairs} idle pairs", lambda s: _memory(s, opts.pairs),
                    applies=lambda name: name != "direct", repeat=False),
        Measurement("iperf3 -P 1", thr),
        *plain.latency_and_rate(d),
    ]


def derive(rows: Mapping[str, dict[str, float]]) -> None:
    direct = rows.get("direct", {})
    for name, row in rows.items():
        for q in ("p50", "p99"):
            base, value = direct.get(f"{q}_us", math.nan), row.get(f"{q}_us", math.nan)
            row[f"added_{q}_us"] = math.nan if name == "direct" else value - base


def _f1(v: float) -> str:
    return f"{v:.1f}"


COLUMNS = [
    Column("thr1_gbps", "Gbit/s", lambda v: f"{v:.2f}"),
    Column("p50_us", "rtt p50 µs", _f1),
    Column("added_p50_us", "+p50 µs", _f1),
    Column("p99_us", "rtt p99 µs", _f1),
    Column("added_p99_us", "+p99 µs", _f1),
    Column("conn_per_s", "conn/s"),
    Column("kib_per_pair", "KiB/pair (RSS)", _f1),
    Column("pss_kib_per_pair", "KiB/pair (PSS)", _f1),
    Column("kib_originate", "KiB orig", _f1),
    Column("kib_terminate", "KiB term", _f1),
]
RATIO_COLUMNS = ("thr1_gbps", "conn_per_s")
RATIOS_TO = ("stunnel",)
LEGEND = [
    "path: client -> originate (plain -> TLS) -> terminate (TLS -> plain) -> target",
    "Gbit/s: iperf3 -P 1 through the chain; rtt: 1-byte ping-pong on one connection; "
    "+p50/+p99: minus direct's",
    "conn/s: connect, 1-byte echo, close, 16 concurrent clients (one TLS handshake each)",
    "KiB/pair: RSS (PSS) growth of both relay processes per idle connection, / 2 (per "
    "relay: one TLS + one plaintext socket); KiB orig/term: RSS growth of each process",
]
TARGETS = [
    Target("throughput", "wirekit", "thr1_gbps", "stunnel", 1.3),
    Target("added latency p50", "wirekit", "added_p50_us", "stunnel", 1.0,
           higher_is_better=False),
    Target("connections/s", "wirekit", "conn_per_s", "stunnel", 1.0),
    Target("memory KiB per idle TLS pair", "wirekit", "kib_per_pair", "", 64.0,
           higher_is_better=False),
    Target("throughput (--workers 2)", "wirekit ×2", "thr1_gbps", "stunnel", 1.3),
    Target("connections/s (--workers 2)", "wirekit ×2", "conn_per_s", "stunnel", 1.0),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench forward_tls", description=TITLE)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="1 run of 1 s, 500 pairs")
    ap.add_argument("--only", default="", help="comma-separated subjects")
    a = ap.parse_args(argv)
    runs, duration, pairs = (1, 1.0, min(a.pairs, 500)) if a.quick else (a.runs, a.duration,
                                                                          a.pairs)
    opts = Options(runs=max(1, runs), duration=duration, quick=a.quick, pairs=pairs,
                   only=tuple(x.strip() for x in a.only.split(",") if x.strip()))
    import os

    cmd = "python -m bench forward_tls " + shlex.join(sys.argv[2:] if argv is None else argv)
    print(f"# {cmd}\n# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at "
          f"start, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, medians of {opts.runs} run(s) of "
          f"{opts.duration:g} s, {opts.pairs} idle pairs\n", flush=True)
    try:
        subj = [s for s in subjects(opts) if not opts.only or s.name in opts.only]
        result = run_suite(subj, measurements(opts), opts)
        rows = result.medians()
        derive(rows)
        print(f"## {TITLE}\n")
        print(format_table(rows, COLUMNS, ratios_to=RATIOS_TO, ratio_columns=RATIO_COLUMNS))
        print()
        for line in LEGEND:
            print(f"- {line}")
        for note in result.notes:
            print(f"- note: {note}")
        print("\nTargets:")
        for v in check_targets(rows, TARGETS):
            print(f"- {v.describe()}")
        print(f"\n# load average {os.getloadavg()[0]:.2f} at the end", flush=True)
    finally:
        for proc in (plain.TARGET_SERVERS.echo, plain.TARGET_SERVERS.iperf):
            if proc is not None:
                proc.stop()
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
